import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { selectBackend } from '../src/backends/select.js';
import { FusedAttentionProgram, GUARANTEED_WORKGROUP_BYTES, keyTileFor, type AttentionTiles } from '../src/backends/webgpu/attention-program.js';
import { guardWebGpuBatch } from '../src/backends/webgpu/device.js';
import { runWebGpuProgram } from '../src/backends/webgpu/kernels.js';
import { BackendError } from '../src/errors.js';
import {
  FUSED_ATTENTION,
  fusedAttention,
  fusedSwiglu,
  hasFusedKernel,
  RESIDUAL_LAYER_NORM,
  residualLayerNorm,
  residualLayerNormComposite,
  SWIGLU,
} from '../src/model/fused-ops.js';
import { attentionFloat64, attentionTables as tables, compositeAttention, maxAbsError, paddingBias } from './helpers/attention.js';
import { isOutOfMemory } from '../src/pipeline/out-of-memory.js';
import { expectClose } from './helpers/fixtures.js';
import { webGpuSuite } from './helpers/webgpu.js';

const suite = await webGpuSuite();
/** Both sides compute in float32 with other summation orders. */
const KERNEL_TOLERANCE = 1e-5;

suite.describe('fused WebGPU kernels against the tfjs composites they replace', () => {
  beforeAll(async () => {
    await selectBackend('webgpu');
  });

  it('are registered for webgpu', () => {
    expect(hasFusedKernel(FUSED_ATTENTION)).toBe(true);
    expect(hasFusedKernel(RESIDUAL_LAYER_NORM)).toBe(true);
    expect(hasFusedKernel(SWIGLU)).toBe(true);
  });

  it.each([
    [1, 1, 1, 16, false],
    [2, 5, 3, 16, false],
    [2, 64, 2, 64, true],
    [1, 65, 2, 64, false],
    [2, 130, 1, 32, true],
    [1, 33, 1, 128, false],
    [3, 40, 12, 64, true],
    // Half a head of 6 and of 5 floats: rows as vec2 and as scalars.
    [2, 7, 2, 12, true],
    [1, 9, 3, 10, false],
  ])('rotary attention of B=%i, T=%i, H=%i, hd=%i (a table per row: %s) with padded keys', async (B, T, H, hd, perRow) => {
    const [q, k, v] = [1, 2, 3].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
    const rotary = tables(B, T, hd, perRow);
    // Row 0 unpadded; the others lose up to half their keys.
    const bias = paddingBias(B, T, (b) => Math.floor((b * T) / (2 * B)));
    const scale = 1 / Math.sqrt(hd);
    const fused = fusedAttention(q, k, v, rotary, bias, scale);
    const composite = compositeAttention(q, k, v, rotary, bias, scale);
    expect(fused.shape).toEqual([B, T, H, hd]);
    expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, `attention [${B}, ${T}, ${H}, ${hd}]`);
    tf.dispose([q, k, v, rotary.cos, rotary.sin, bias, fused, composite]);
  });

  it.each([
    { queryTile: 64, keyTile: 16 },
    { queryTile: 256, keyTile: keyTileFor(64, GUARANTEED_WORKGROUP_BYTES) },
    { queryTile: 32, keyTile: 48 },
  ])('attention with tiles of $queryTile queries and $keyTile keys, against the composite', async (tiles: AttentionTiles) => {
    // A length that fills no tile exactly, and more keys per tile than threads in the last case.
    const [B, T, H, hd] = [2, 300, 3, 64];
    const [q, k, v] = [10, 11, 12].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
    const rotary = tables(B, T, hd, true);
    const bias = paddingBias(B, T, (b) => 37 * b);
    const scale = 1 / Math.sqrt(hd);
    const program = new FusedAttentionProgram([B, T, H, hd], tiles);
    const tiled = runWebGpuProgram(program, [q, k, v, rotary.cos, rotary.sin, bias], [{ type: 'float32', data: [scale] }]);
    const composite = compositeAttention(q, k, v, rotary, bias, scale);
    expectClose(await tiled.data(), await composite.data(), KERNEL_TOLERANCE, `attention with tiles ${JSON.stringify(tiles)}`);
    tf.dispose([q, k, v, rotary.cos, rotary.sin, bias, tiled, composite]);
  });

  it('attention without a bias, and with scores far from zero, where a naive softmax overflows', async () => {
    const [B, T, H, hd] = [1, 50, 2, 16];
    const [q, k, v] = [4, 5, 6].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
    const rotary = tables(1, T, hd, false);
    const fused = fusedAttention(q, k, v, rotary, undefined, 30);
    const composite = compositeAttention(q, k, v, rotary, tf.zeros([1, 1, 1, T]) as tf.Tensor4D, 30);
    // Scores reach about 500 here, where one float32 step is 6e-5: rounding the scores alone moves the
    // outputs by about 2e-5, so two float32 computations that sum in different orders differ by that much.
    // Both are held to the float64 result instead, and the kernel must be no further from it than tfjs's ops.
    const [Q, K, V, cos, sin] = await Promise.all([q, k, v, rotary.cos, rotary.sin].map((t) => t.data() as Promise<Float32Array>));
    const exact = attentionFloat64(Q, K, V, cos, sin, [T, H, hd], 30);
    const fusedError = maxAbsError(await fused.data(), exact);
    const compositeError = maxAbsError(await composite.data(), exact);
    expect(fusedError).toBeLessThanOrEqual(compositeError);
    expect((await fused.data()).every(Number.isFinite)).toBe(true);
    tf.dispose([q, k, v, rotary.cos, rotary.sin, fused, composite]);
  });

  it('attention over more workgroups than one dispatch dimension holds (65,535)', async () => {
    // 70,000 (sequence, head) pairs of one query each: tfjs reshapes the dispatch to 2-D. Rotary tables of ones and zeros.
    const [q, k, v] = [7, 8, 9].map((seed) => tf.randomNormal([35_000, 2, 2, 16], 0, 1, 'float32', seed) as tf.Tensor4D);
    const rotary = { cos: tf.ones([1, 2, 8]) as tf.Tensor3D, sin: tf.zeros([1, 2, 8]) as tf.Tensor3D };
    const fused = fusedAttention(q, k, v, rotary, undefined, 1);
    // tfjs's own batched matMul refuses a batch this large, so the reference is computed here.
    const [Q, K, V] = await Promise.all([q.data(), k.data(), v.data()]);
    const expected = new Float32Array(Q.length);
    const at = (b: number, t: number, h: number) => ((b * 2 + t) * 2 + h) * 16;
    for (let b = 0; b < 35_000; b++) {
      for (let h = 0; h < 2; h++) {
        for (let t = 0; t < 2; t++) {
          const scores = [0, 1].map((j) => {
            let dot = 0;
            for (let d = 0; d < 16; d++) dot += Q[at(b, t, h) + d] * K[at(b, j, h) + d];
            return dot;
          });
          const top = Math.max(...scores);
          const weights = scores.map((x) => Math.exp(x - top));
          const total = weights[0] + weights[1];
          for (let d = 0; d < 16; d++) expected[at(b, t, h) + d] = (weights[0] * V[at(b, 0, h) + d] + weights[1] * V[at(b, 1, h) + d]) / total;
        }
      }
    }
    expectClose(await fused.data(), expected, KERNEL_TOLERANCE, 'attention, 70,000 workgroups');
    tf.dispose([q, k, v, rotary.cos, rotary.sin, fused]);
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

  it.each([[1, 16], [37, 256], [300, 3072]])('SwiGLU of [%i, %i], against up · gate · sigmoid(gate)', async (N, F) => {
    const gate = tf.randomNormal([N, F], 0, 4, 'float32', 11) as tf.Tensor2D;
    const up = tf.randomNormal([N, F], 0, 1, 'float32', 12) as tf.Tensor2D;
    const fused = fusedSwiglu(gate, up);
    const composite = tf.tidy(() => tf.mul(up, tf.mul(gate, tf.sigmoid(gate))));
    expectClose(await fused.data(), await composite.data(), KERNEL_TOLERANCE, `SwiGLU [${N}, ${F}]`);
    tf.dispose([gate, up, fused, composite]);
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

/** A batch with a buffer above the device's per-buffer limit, which the GPU refuses. */
async function overLimitBatch() {
  const limit = (tf.backend() as unknown as { device: { limits: { maxStorageBufferBindingSize: number } } }).device.limits.maxStorageBufferBindingSize;
  const big = tf.ones([limit / 4 + 1024]);
  const sum = tf.add(big, 1);
  try {
    return await sum.data();
  } finally {
    tf.dispose([big, sum]);
  }
}

suite.describe('WebGPU error scopes around a batch', () => {
  beforeAll(async () => {
    await selectBackend('webgpu');
  });

  it('turn a buffer above the per-buffer limit into a BackendError, not a silent wrong result', async () => {
    const error = await guardWebGpuBatch(overLimitBatch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/the GPU refused the batch/);
    // The device still works afterwards.
    expect(Array.from(await guardWebGpuBatch(() => tf.tidy(() => tf.add(tf.ones([2]), 1)).data()))).toEqual([2, 2]);
  });

  it('close a batch\'s scopes before its read-back, so that an overlapping batch\'s error stays its own', async () => {
    // The first batch is encoded and waits for its read-back while the second, refused by the GPU, is encoded.
    const fine = guardWebGpuBatch(() => tf.tidy(() => tf.add(tf.ones([4]), 1)).data());
    const refused = guardWebGpuBatch(overLimitBatch);
    const [first, second] = await Promise.allSettled([fine, refused]);
    expect(first).toEqual({ status: 'fulfilled', value: new Float32Array([2, 2, 2, 2]) });
    expect(second.status).toBe('rejected');
    expect((second as PromiseRejectedResult).reason).toBeInstanceOf(BackendError);
  });

  it('say "out of memory" in the words the batch processor backs off on', () => {
    expect(isOutOfMemory(new Error('WebGPU out of memory: Allocation failed'))).toBe(true);
  });
});
