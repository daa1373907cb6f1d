import * as tf from '@tensorflow/tfjs-core';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNamed } from '../src/backends/backend.js';
import { loadEmbedder, type Embedder } from '../src/embedder.js';
import { ConfigError, InputError, NonFiniteWeightError } from '../src/errors.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { PORTABLE_BACKENDS, useBackend } from './helpers/backend.js';
import { cosine, FIXTURE_NAMES, fixtureDir, reference } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

/** The indices of the `k` texts nearest to `query` by cosine, nearest first. */
function nearest(query: Float32Array, corpus: Float32Array[], k: number): number[] {
  return corpus
    .map((v, i) => ({ i, score: cosine(query, v) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k)
    .map((s) => s.i);
}

/**
 * Fidelity of `dtype: 'q8'` against float32 on the same backend, as the
 * README states it: per-text cosine of normalised embeddings at least 0.999
 * on average and 0.995 at worst, and the neighbours a search finds.
 */
describe.each(PORTABLE_BACKENDS)('q8 on %s', (backend) => {
  for (const fixture of FIXTURE_NAMES) {
    describe(fixture, () => {
      // The cpu backend takes seconds per long text; it gets the short ones.
      const texts = reference(fixture)
        .texts.filter((t) => backend !== 'cpu' || t.num_tokens <= 64)
        .map((t) => t.text);
      let fp32: Embedder;
      let q8: Embedder;
      let exact: Float32Array[];
      let quantized: Float32Array[];
      beforeAll(async () => {
        fp32 = await loadEmbedder(fixtureDir(fixture), { backend, workers: 1, threads: 1 });
        q8 = await loadEmbedder(fixtureDir(fixture), { backend, workers: 1, threads: 1, dtype: 'q8' });
        exact = (await fp32.embed(texts)).embeddings;
        quantized = (await q8.embed(texts)).embeddings;
      });
      afterAll(async () => {
        await fp32.dispose();
        await q8.dispose();
      });

      it('says which precision it runs', () => {
        expect(fp32.dtype).toBe('fp32');
        expect(q8.dtype).toBe('q8');
      });

      it('stays within the stated cosine of float32, text by text', () => {
        const cosines = texts.map((_, i) => cosine(exact[i], quantized[i]));
        const mean = cosines.reduce((a, b) => a + b, 0) / cosines.length;
        expect(mean).toBeGreaterThanOrEqual(0.999);
        expect(Math.min(...cosines)).toBeGreaterThanOrEqual(0.995);
        // Not float32 by another name: quantization moves every vector a little.
        expect(cosines.filter((c) => c === 1).length).toBeLessThan(texts.length / 2);
      });

      it('finds nearly the same top-10 neighbours for every text', () => {
        const overlaps = texts.map((_, i) => {
          const a = new Set(nearest(exact[i], exact, 10));
          return nearest(quantized[i], quantized, 10).filter((j) => a.has(j)).length / 10;
        });
        expect(overlaps.reduce((a, b) => a + b, 0) / overlaps.length).toBeGreaterThanOrEqual(0.95);
      });

      it('embeds a text the same alone as in a batch', async () => {
        for (const i of [0, 7, texts.length - 1]) {
          const [alone] = (await q8.embed([texts[i]])).embeddings;
          expect(cosine(alone, quantized[i])).toBeGreaterThan(0.99999);
        }
      });
    });
  }
});

describe('q8 weights in memory', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('hold each projection as a quarter of its float32 size, plus a scale and room for a sum per column', async () => {
    const cpu = backendNamed('cpu');
    const before = tf.memory().numBytes;
    const fp32 = await cpu.loadModel(fixtureDir('nomic-tiny'), {});
    const fp32Bytes = tf.memory().numBytes - before;
    fp32.dispose();
    const q8 = await cpu.loadModel(fixtureDir('nomic-tiny'), { dtype: 'q8' });
    const q8Bytes = tf.memory().numBytes - before;
    q8.dispose();
    // nomic-tiny: 2 layers of q, k, v, out [64, 64] and up, gate [64, 256], down [256, 64].
    const projections = 2 * (4 * 64 * 64 + 3 * 64 * 256);
    const columns = 2 * (4 * 64 + 2 * 256 + 64);
    const alignmentRoom = 2 * 7 * 16 * 4;
    // Per column, its scale and the relaxed kernel's sum (see relaxed-wat.ts).
    expect(fp32Bytes - q8Bytes).toBe(projections * 4 - (projections + alignmentRoom + columns * 4 * 2));
  });
});

describe('q8 refuses what it cannot do', () => {
  const root = tempDir();

  it('names an unknown dtype', async () => {
    await expect(loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'cpu', dtype: 'fp16' as never })).rejects.toThrow(InputError);
    await expect(loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'cpu', dtype: 'int8' as never })).rejects.toThrow(/dtype.*'fp32' or 'q8'.*int8/);
  });

  it('is a ConfigError on a backend without the kernel, saying where it runs', () => {
    const { supported, q8Failure } = backendNamed('tensorflow').dtypes();
    expect(supported).toEqual(['fp32']);
    expect(q8Failure).toMatch(/wasm and cpu/);
    expect(new ConfigError('dtype', 'q8', `not on the tensorflow backend: ${q8Failure}`).message).toMatch(/"dtype" = "q8"/);
  });

  it.each(['wasm', 'cpu'] as const)('reports a NaN projection weight by name on %s, as float32 loading does', async (backend) => {
    const file = openSafetensors(`${fixtureDir('nomic-tiny')}/model.safetensors`);
    const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: file.readFloat32(t.name) }));
    file.close();
    tensors.find((t) => t.name === 'encoder.layers.1.mlp.fc2.weight')!.data[5] = NaN;
    const dir = join(root, `nan-${backend}`);
    mkdirSync(dir);
    copyFileSync(`${fixtureDir('nomic-tiny')}/config.json`, join(dir, 'config.json'));
    copyFileSync(`${fixtureDir('nomic-tiny')}/tokenizer.json`, join(dir, 'tokenizer.json'));
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const failure = await loadEmbedder(dir, { backend, workers: 1, threads: 1, dtype: 'q8' }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(NonFiniteWeightError);
    expect((failure as NonFiniteWeightError).tensor).toBe('encoder.layers.1.mlp.fc2.weight');
  });
});
