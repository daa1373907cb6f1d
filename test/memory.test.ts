import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNamed } from '../src/backends/backend.js';
import type { AttentionKernel } from '../src/model/attention.js';
import { loadModel } from '../src/model/load-model.js';
import { measurePeakBytes } from '../src/model/memory-watermark.js';
import type { NomicBertModel } from '../src/model/nomic-bert.js';
import { estimateMemory, queryBlockFor } from '../src/pipeline/memory.js';
import { parseConfig } from '../src/weights/config.js';
import { PORTABLE_BACKENDS, useBackend } from './helpers/backend.js';
import { expectClose, fixtureDir } from './helpers/fixtures.js';

/** Runs a forward pass of B random sequences of length T under tf.profile, returning output and peak bytes. */
async function profiledForward(model: NomicBertModel, attention: AttentionKernel, B: number, T: number, padded: boolean, queryBlock?: number) {
  const base = tf.memory().numBytes;
  let hidden: Float32Array = new Float32Array();
  const profile = await tf.profile(() => {
    tf.tidy(() => {
      const inputIds = tf.randomUniform([B, T], 0, 30000, 'int32', 7) as tf.Tensor2D;
      const attentionMask = (
        padded ? tf.concat([tf.ones([B, T - 3], 'int32'), tf.zeros([B, 3], 'int32')], 1) : tf.ones([B, T], 'int32')
      ) as tf.Tensor2D;
      hidden = model.forward({ inputIds, attentionMask }, { queryBlock, attention }).dataSync() as Float32Array;
    });
  });
  return { hidden, peak: profile.peakBytes - base };
}

describe.each(PORTABLE_BACKENDS)('memory estimator on %s', (backend) => {
  let model: NomicBertModel;
  // The wasm backend runs attention head by head (but for short batches), the others batched.
  const attention = backendNamed(backend).attention();
  beforeAll(async () => {
    await useBackend(backend);
    model = loadModel(fixtureDir('nomic-tiny'));
  });
  afterAll(() => model.dispose());

  it.each([
    [1, 8, false],
    [4, 64, true],
    [2, 256, true],
    [8, 128, false],
    [1, 1024, false],
  ])('predicts the activation peak of B=%i, L=%i (padded: %s) within 10%%', async (B, T, padded) => {
    const { peak } = await profiledForward(model, attention, B, T, padded);
    const predicted = estimateMemory(model.config, B, T, { attention }).activationBytes;
    expect(predicted / peak).toBeGreaterThan(0.97);
    expect(predicted / peak).toBeLessThan(1.1);
  });

  it('predicts the peak of blocked attention too', async () => {
    const { peak } = await profiledForward(model, attention, 1, 1024, false, 128);
    const predicted = estimateMemory(model.config, 1, 1024, { queryBlock: 128, attention }).activationBytes;
    expect(predicted / peak).toBeGreaterThan(0.97);
    expect(predicted / peak).toBeLessThan(1.1);
  });

  it('blocked attention gives the unblocked result', async () => {
    const whole = await profiledForward(model, attention, 2, 300, true);
    for (const block of [64, 100, 299]) {
      const blocked = await profiledForward(model, attention, 2, 300, true, block);
      expectClose(blocked.hidden, whole.hidden, 1e-5, `query block ${block}`);
      // Small blocks cut the peak here, where the score matrix dominates it.
      if (block <= 100) expect(blocked.peak).toBeLessThan(whole.peak);
    }
  });

  it('measures the same peak as tf.profile without it, and stops measuring when the pass ends or throws', async () => {
    const engine = tf.engine();
    const track = engine.trackTensor;
    const base = tf.memory().numBytes;
    const { peak } = await profiledForward(model, attention, 2, 256, true);
    const measured = measurePeakBytes(() =>
      tf.tidy(() => {
        const inputIds = tf.randomUniform([2, 256], 0, 30000, 'int32', 7) as tf.Tensor2D;
        const attentionMask = tf.concat([tf.ones([2, 253], 'int32'), tf.zeros([2, 3], 'int32')], 1) as tf.Tensor2D;
        model.forward({ inputIds, attentionMask }, { attention }).dispose();
      }),
    );
    expect(measured.peakBytes - base).toBe(peak);
    expect(engine.trackTensor).toBe(track);
    expect(() =>
      measurePeakBytes(() => {
        throw new Error('mid-pass');
      }),
    ).toThrow('mid-pass');
    expect(engine.trackTensor).toBe(track);
  });

});

describe('memory estimator for the real model', () => {
  const real = parseConfig({ n_embd: 768, n_head: 12, n_layer: 12, n_inner: 3072, vocab_size: 30528, pad_vocab_size_multiple: 64 });
  const GiB = 1024 ** 3;

  it('counts the weights of the 136.7M parameters', () => {
    expect(estimateMemory(real, 1, 128).weightBytes).toBe(136731648 * 4);
  });

  it('batched attention over 8192 tokens needs query blocks to fit in 3 GiB', () => {
    const whole = estimateMemory(real, 1, 8192, { attention: 'batched' });
    // 12 heads × 8192² scores, twice, in float32: 6 GiB.
    expect(whole.attentionBytes).toBe(2 * 12 * 8192 * 8192 * 4);
    const block = queryBlockFor(real, 1, 8192, 3 * GiB, 'batched');
    expect(block).toBeLessThan(8192);
    expect(estimateMemory(real, 1, 8192, { queryBlock: block, attention: 'batched' }).totalBytes).toBeLessThanOrEqual(3 * GiB);
    expect(queryBlockFor(real, 1, 512, 3 * GiB, 'batched')).toBe(512);
  });

  it('head-by-head attention over 8192 tokens holds the scores of one head: no blocks at 3 GiB, blocks at 1 GiB', () => {
    expect(estimateMemory(real, 1, 8192, { attention: 'per-head' }).attentionBytes).toBe(2 * 8192 * 8192 * 4);
    expect(queryBlockFor(real, 1, 8192, 3 * GiB, 'per-head')).toBe(8192);
    const block = queryBlockFor(real, 1, 8192, GiB, 'per-head');
    expect(block).toBeLessThan(8192);
    expect(estimateMemory(real, 1, 8192, { queryBlock: block, attention: 'per-head' }).totalBytes).toBeLessThanOrEqual(GiB);
  });

  it('counts batched attention unless told otherwise, the most a backend may need', () => {
    const batched = estimateMemory(real, 8, 512, { attention: 'batched' });
    expect(estimateMemory(real, 8, 512)).toEqual(batched);
    expect(estimateMemory(real, 8, 512, { attention: 'per-head' }).totalBytes).toBeLessThan(batched.totalBytes);
  });

  it('fused attention holds nothing of size T² and needs no query blocks', () => {
    const fused = estimateMemory(real, 1, 8192, { attention: 'fused' });
    expect(fused.attentionBytes).toBe(0);
    expect(fused.totalBytes).toBeLessThan(GiB);
    expect(queryBlockFor(real, 1, 8192, GiB / 2, 'fused')).toBe(8192);
  });
});
