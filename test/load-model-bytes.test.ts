import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsError } from '../src/errors.js';
import { loadModelFromBytes } from '../src/model/load-model-bytes.js';
import { loadModel } from '../src/model/load-model.js';
import type { NomicBertModel } from '../src/model/nomic-bert.js';
import { useBackend } from './helpers/backend.js';
import { FIXTURE_NAMES, fixtureDir, reference, type ReferenceText } from './helpers/fixtures.js';

/** Every reference text's last hidden state, one padded batch. */
function hiddenStates(model: NomicBertModel, texts: readonly ReferenceText[]): Float32Array {
  const T = Math.max(...texts.map((t) => t.num_tokens));
  const pad = (values: number[]) => [...values, ...new Array(T - values.length).fill(0)];
  const shape: [number, number] = [texts.length, T];
  return tf.tidy(() =>
    model.forward({
      inputIds: tf.tensor2d(texts.flatMap((t) => pad(t.input_ids)), shape, 'int32'),
      attentionMask: tf.tensor2d(texts.flatMap((t) => pad(t.attention_mask)), shape, 'int32'),
      tokenTypeIds: tf.tensor2d(texts.flatMap((t) => pad(t.token_type_ids)), shape, 'int32'),
    }).dataSync() as Float32Array,
  );
}

const filesOf = (fixture: (typeof FIXTURE_NAMES)[number]) => ({
  config: JSON.parse(readFileSync(`${fixtureDir(fixture)}/config.json`, 'utf8')) as unknown,
  weights: readFileSync(`${fixtureDir(fixture)}/model.safetensors`),
});

describe('loadModelFromBytes', () => {
  beforeAll(() => useBackend('cpu'));

  it.each(FIXTURE_NAMES)('%s: gives the model a folder gives, to the bit, with no file system', (fixture) => {
    const { config, weights } = filesOf(fixture);
    // Short texts suffice: what is under test is the weights, and the cpu backend is slow on long ones.
    const texts = reference(fixture).texts.filter((t) => t.num_tokens <= 64);
    expect(texts.length).toBeGreaterThan(2);
    const fromFolder = loadModel(fixtureDir(fixture), { layoutCache: false });
    const fromBytes = loadModelFromBytes(config, weights, { label: 'https://example.test/model.safetensors' });
    const expected = hiddenStates(fromFolder, texts);
    const got = hiddenStates(fromBytes, texts);
    expect(got.length).toBe(expected.length);
    expect(Buffer.from(got.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    fromFolder.dispose();
    fromBytes.dispose();
  });

  it('names the label when the bytes are cut short, and leaks no tensor', () => {
    const { config, weights } = filesOf('nomic-tiny');
    const before = tf.memory().numTensors;
    const url = 'https://example.test/cut/model.safetensors';
    const error = (() => {
      try {
        loadModelFromBytes(config, weights.subarray(0, weights.length - 1000), { label: url });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(SafetensorsError);
    expect((error as Error).message).toContain(url);
    expect(tf.memory().numTensors).toBe(before);
  });
});
