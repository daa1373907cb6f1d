import * as tf from '@tensorflow/tfjs-core';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { NonFiniteWeightError, WeightsError } from '../src/errors.js';
import { loadModel } from '../src/model/load-model.js';
import { type TensorToWrite } from '../src/weights/safetensors.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { useBackend } from './helpers/backend.js';
import { fixtureDir } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const root = tempDir();
let counter = 0;

function fixtureTensors(): TensorToWrite[] {
  const file = openSafetensors(`${fixtureDir('nomic-tiny')}/model.safetensors`);
  const tensors = [...file.tensors.values()].map((t) => ({
    name: t.name,
    dtype: 'F32' as const,
    shape: t.shape,
    data: file.readFloat32(t.name),
  }));
  file.close();
  return tensors;
}

/** A model folder with the tiny config and the given tensors. */
function modelDir(tensors: TensorToWrite[]): string {
  const dir = join(root, `model-${counter++}`);
  mkdirSync(dir);
  copyFileSync(`${fixtureDir('nomic-tiny')}/config.json`, join(dir, 'config.json'));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

function loadError(dir: string): Error {
  const before = tf.memory().numTensors;
  try {
    loadModel(dir).dispose();
  } catch (error) {
    // A failed load leaves nothing behind on the backend.
    expect(tf.memory().numTensors).toBe(before);
    return error as Error;
  }
  throw new Error(`${dir} loaded without error`);
}

describe('strict weight loading', () => {
  beforeAll(() => useBackend('cpu'));

  it('lists every missing, unexpected and mis-shaped tensor at once', () => {
    const tensors = fixtureTensors()
      .filter((t) => t.name !== 'encoder.layers.1.mlp.fc2.weight')
      .map((t) => (t.name === 'emb_ln.bias' ? { ...t, shape: [8, 8] } : t));
    tensors.push({ name: 'pooler.dense.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) });
    const error = loadError(modelDir(tensors)) as WeightsError;
    expect(error).toBeInstanceOf(WeightsError);
    expect(error.missing).toEqual(['encoder.layers.1.mlp.fc2.weight']);
    expect(error.unexpected).toEqual(['pooler.dense.weight']);
    expect(error.misshaped).toEqual([{ name: 'emb_ln.bias', expected: [64], actual: [8, 8] }]);
    expect(error.message).toMatch(/missing: encoder\.layers\.1\.mlp\.fc2\.weight/);
  });

  it('reports a NaN weight by name', () => {
    const tensors = fixtureTensors();
    const target = tensors.find((t) => t.name === 'encoder.layers.0.attn.Wqkv.weight')!;
    target.data[77] = NaN;
    const error = loadError(modelDir(tensors)) as NonFiniteWeightError;
    expect(error).toBeInstanceOf(NonFiniteWeightError);
    expect(error.tensor).toBe('encoder.layers.0.attn.Wqkv.weight');
    expect(error.index).toBe(77);
  });

  it('reports an infinite weight by name', () => {
    const tensors = fixtureTensors();
    tensors.find((t) => t.name === 'emb_ln.weight')!.data[3] = -Infinity;
    expect(loadError(modelDir(tensors)).message).toMatch(/"emb_ln.weight" holds -Infinity at flat index 3/);
  });

  it('takes the SwiGLU width from the weights, not n_inner', () => {
    // A checkpoint whose fc11 width disagrees everywhere but consistently is read at that width...
    const widen = (t: TensorToWrite): TensorToWrite => {
      if (/fc1[12]\.weight$/.test(t.name)) return { ...t, shape: [512, 64], data: new Float32Array(512 * 64) };
      if (/fc2\.weight$/.test(t.name)) return { ...t, shape: [64, 512], data: new Float32Array(64 * 512) };
      return t;
    };
    const model = loadModel(modelDir(fixtureTensors().map(widen)));
    model.dispose();
    // ...while one layer of another width is a shape error.
    const mixed = fixtureTensors().map((t) => (t.name.startsWith('encoder.layers.0.') ? widen(t) : t));
    expect((loadError(modelDir(mixed)) as WeightsError).misshaped.map((m) => m.name)).toEqual([
      'encoder.layers.1.mlp.fc11.weight',
      'encoder.layers.1.mlp.fc12.weight',
      'encoder.layers.1.mlp.fc2.weight',
    ]);
  });

  it('frees its weights on dispose, twice safely', () => {
    const before = tf.memory().numTensors;
    const model = loadModel(fixtureDir('nomic-tiny'));
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    model.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
