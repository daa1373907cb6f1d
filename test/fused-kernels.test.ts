import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { selectBackend } from '../src/backends/select.js';
import { guardWebGpuBatch } from '../src/backends/webgpu/device.js';
import { BackendError } from '../src/errors.js';
import { FUSED_ATTENTION, fusedAttention, hasFusedKernel, RESIDUAL_LAYER_NORM, residualLayerNorm, residualLayerNormComposite } from '../src/model/fused-ops.js';
import { MASKED_SCORE } from '../src/model/attention.js';
import { isOutOfMemory } from '../src/scheduling/out-of-memory.js';
import { expectClose } from './helpers/fixtures.js';
import { webGpuSuite } from './helpers/webgpu.js';

const suite = await webGpuSuite();
/** Both sides compute in float32 with other summation orders. */
const KERNEL_TOLERANCE = 1e-5;

/** The tfjs composite the fused attention kernel replaces. */
function compositeAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.matMul(tf.softmax(tf.add(tf.matMul(q, k, false, true), bias)), v));
}

/** [B, 1, 1, T] bias masking the last `padding[b]` keys of row b. */
function paddingBias(B: number, T: number, padding: (b: number) => number): tf.Tensor4D {
  const values = new Float32Array(B * T);
  for (let b = 0; b < B; b++) values.fill(MASKED_SCORE, b * T + T - padding(b), (b + 1) * T);
  return tf.tensor4d(values, [B, 1, 1, T]);
}

suite.describe('fused WebGPU kernels against the tfjs composites they replace', () => {
  beforeAll(async () => {
    await selectBackend('webgpu');
  });

  it('are registered for webgpu', () => {
    expect(hasFusedKernel(FUSED_ATTENTION)).toBe(true);
    expect(hasFusedKernel(RESIDUAL_LAYER_NORM)).toBe(true);
  });

  it.each([
    [1, 1, 1, 16],
    [2, 3, 5, 16],
    [2, 2, 64, 64],
    [1, 2, 65, 64],
    [2, 1, 130, 32],
    [1, 1, 33, 128],
    [3, 12, 40, 64],
  ])('attention of B=%i, H=%i, T=%i, hd=%i with padded keys', async (B, H, T, hd) => {
    const [q, k, v] = [1, 2, 3].map((seed) => tf.randomNormal([B, H, T, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
    // Row 0 unpadded; the others lose up to half their keys.
    const bias = paddingBias(B, T, (b) => Math.floor((b * T) / (2 * B)));
    const fused = fusedAttention(q, k, v, bias);
    const composite = compositeAttention(q, k, v, bias);
    expect(fused.shape).toEqual([B, H, T, hd]);
    expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, `attention [${B}, ${H}, ${T}, ${hd}]`);
    tf.dispose([q, k, v, bias, fused, composite]);
  });

  it('attention without a bias, and with scores far from zero, where a naive softmax overflows', async () => {
    const [q, k, v] = [4, 5, 6].map((seed) => tf.randomNormal([1, 2, 50, 16], 0, 1, 'float32', seed) as tf.Tensor4D);
    const loud = tf.mul(q, 30) as tf.Tensor4D;
    const fused = fusedAttention(loud, k, v, undefined);
    const composite = compositeAttention(loud, k, v, tf.zeros([1, 1, 1, 50]));
    expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, 'attention of large scores');
    expect((await fused.data()).every(Number.isFinite)).toBe(true);
    tf.dispose([q, k, v, loud, fused, composite]);
  });

  it('attention over more workgroups than one dispatch dimension holds (65,535)', async () => {
    // 70,000 (sequence, head) pairs of one query each: tfjs reshapes the dispatch to 2-D.
    const [q, k, v] = [7, 8, 9].map((seed) => tf.randomNormal([70_000, 1, 2, 16], 0, 1, 'float32', seed) as tf.Tensor4D);
    const bias = tf.zeros([70_000, 1, 1, 2]) as tf.Tensor4D;
    const fused = fusedAttention(q, k, v, bias);
    // tfjs's own batched matMul refuses a batch this large, so the reference is computed here.
    const [Q, K, V] = await Promise.all([q.data(), k.data(), v.data()]);
    const expected = new Float32Array(Q.length);
    const hd = 16;
    for (let row = 0; row < 70_000 * 2; row++) {
      const b = Math.floor(row / 2);
      const scores = [0, 1].map((j) => {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += Q[row * hd + d] * K[(b * 2 + j) * hd + d];
        return dot;
      });
      const top = Math.max(...scores);
      const weights = scores.map((x) => Math.exp(x - top));
      const total = weights[0] + weights[1];
      for (let d = 0; d < hd; d++) {
        expected[row * hd + d] = (weights[0] * V[b * 2 * hd + d] + weights[1] * V[(b * 2 + 1) * hd + d]) / total;
      }
    }
    expectClose(await fused.data(), expected, KERNEL_TOLERANCE, 'attention, 70,000 workgroups');
    tf.dispose([q, k, v, bias, fused]);
  });

  it.each([
    [1, 64],
    [7, 768],
    [300, 100],
    [5, 16],
    [70_000, 16],
  ])('residual LayerNorm of [%i, %i]', async (N, D) => {
    const x = tf.randomNormal([N, D], 0.5, 2, 'float32', 1) as tf.Tensor2D;
    const residual = tf.randomNormal([N, D], -1, 3, 'float32', 2) as tf.Tensor2D;
    const gamma = tf.randomNormal([D], 1, 0.2, 'float32', 3) as tf.Tensor1D;
    const beta = tf.randomNormal([D], 0, 0.2, 'float32', 4) as tf.Tensor1D;
    const fused = residualLayerNorm(x, residual, gamma, beta, 1e-12);
    const composite = residualLayerNormComposite(x, residual, gamma, beta, 1e-12);
    expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, `residual LayerNorm [${N}, ${D}]`);
    tf.dispose([x, residual, gamma, beta, fused, composite]);
  });

  it('residual LayerNorm uses its epsilon', async () => {
    // A constant row has zero variance: the output is beta, scaled by 1/sqrt(eps) of nothing.
    const x = tf.fill([2, 64], 3) as tf.Tensor2D;
    const zero = tf.zeros([2, 64]) as tf.Tensor2D;
    const noise = tf.randomNormal([2, 64], 0, 1e-3, 'float32', 5) as tf.Tensor2D;
    const gamma = tf.ones([64]) as tf.Tensor1D;
    const beta = tf.zeros([64]) as tf.Tensor1D;
    for (const eps of [1e-5, 1e-2]) {
      const fused = residualLayerNorm(x, noise, gamma, beta, eps);
      const composite = residualLayerNormComposite(x, noise, gamma, beta, eps);
      expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, `eps ${eps}`);
      tf.dispose([fused, composite]);
    }
    tf.dispose([x, zero, noise, gamma, beta]);
  });
});

suite.describe('WebGPU error scopes around a batch', () => {
  beforeAll(async () => {
    await selectBackend('webgpu');
  });

  it('turn a buffer above the per-buffer limit into a BackendError, not a silent wrong result', async () => {
    const limit = (tf.backend() as unknown as { device: { limits: { maxStorageBufferBindingSize: number } } }).device.limits
      .maxStorageBufferBindingSize;
    const error = await guardWebGpuBatch(async () => {
      const big = tf.ones([limit / 4 + 1024]);
      const sum = tf.add(big, 1);
      try {
        return await sum.data();
      } finally {
        tf.dispose([big, sum]);
      }
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/the GPU refused the batch/);
    // The device still works afterwards.
    expect(Array.from(await guardWebGpuBatch(() => tf.tidy(() => tf.add(tf.ones([2]), 1)).data()))).toEqual([2, 2]);
  });

  it('say "out of memory" in the words the batch processor backs off on', () => {
    expect(isOutOfMemory(new Error('WebGPU out of memory: Allocation failed'))).toBe(true);
  });
});
