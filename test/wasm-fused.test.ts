import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  hasFusedKernel,
  RESIDUAL_LAYER_NORM,
  residualLayerNorm,
  residualLayerNormComposite,
  ROTARY_HEADS,
  rotaryHeads,
  rotaryHeadsComposite,
} from '../src/model/fused-ops.js';
import { stackedRotaryTables, type RotaryTables } from '../src/model/rotary.js';
import { useBackend } from './helpers/backend.js';
import { expectClose, maxAbsDiff } from './helpers/fixtures.js';

/** `LayerNorm(x + residual)` of each row in float64. */
function layerNormFloat64(x: Float32Array, residual: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number, width: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let start = 0; start < x.length; start += width) {
    const row = Array.from({ length: width }, (_, j) => Math.fround(x[start + j] + residual[start + j]));
    const mean = row.reduce((a, b) => a + b, 0) / width;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / width;
    row.forEach((v, j) => (out[start + j] = ((v - mean) / Math.sqrt(variance + eps)) * gamma[j] + beta[j]));
  }
  return out;
}

/** Tables [R, 1, T, hd/2], each row with its own base when R > 1, as NTK scaling makes them. */
function tables(rows: number, T: number, hd: number): RotaryTables {
  const { cos, sin } = stackedRotaryTables(Array.from({ length: rows }, (_, r) => 1000 * (r + 1)), hd, T);
  return { cos: tf.tensor4d(cos, [rows, 1, T, hd / 2]), sin: tf.tensor4d(sin, [rows, 1, T, hd / 2]) };
}

describe('fused kernels of the wasm backend against the tfjs composites they replace', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  it('are registered for wasm', () => {
    expect(hasFusedKernel(RESIDUAL_LAYER_NORM)).toBe(true);
    expect(hasFusedKernel(ROTARY_HEADS)).toBe(true);
  });

  it.each([
    [1, 8, 4, 16, 1 / 4],
    [3, 5, 4, 16, 1],
    [2, 37, 12, 64, 1 / 8],
  ])('rotary heads of B=%i, T=%i, H=%i, hd=%i, scale %f equal the composite bit for bit, with one table or one per row', (B, T, H, hd, scale) => {
    for (const rows of [1, B]) {
      tf.tidy(() => {
        const x = tf.randomNormal([B * T, H * hd], 0, 3, 'float32', 11) as tf.Tensor2D;
        const rotary = tables(rows, T, hd);
        const fused = rotaryHeads(x, rotary, B, H, scale);
        expect(fused.shape).toEqual([B, H, T, hd]);
        const composite = rotaryHeadsComposite(x, rotary, B, H, scale).dataSync();
        const mismatches = [...fused.dataSync()].filter((v, i) => !Object.is(v, composite[i])).length;
        expect(mismatches, `table rows ${rows}`).toBe(0);
      });
    }
  });

  it.each([
    [1, 64, 1e-12],
    [300, 768, 1e-12],
    [7, 16, 0.5],
  ])('residual LayerNorm of [%i, %i] (epsilon %f) matches float64, closer than the float32 composite does', (rows, width, eps) => {
    tf.tidy(() => {
      // Rows far from zero mean, where a one-pass variance would lose digits.
      const x = tf.randomNormal([rows, width], 40, 2, 'float32', 3) as tf.Tensor2D;
      const residual = tf.randomNormal([rows, width], 0, 1, 'float32', 4) as tf.Tensor2D;
      const gamma = tf.randomNormal([width], 1, 0.2, 'float32', 5) as tf.Tensor1D;
      const beta = tf.randomNormal([width], 0, 0.2, 'float32', 6) as tf.Tensor1D;
      const fused = residualLayerNorm(x, residual, gamma, beta, eps).dataSync() as Float32Array;
      const exact = layerNormFloat64(...([x, residual, gamma, beta].map((t) => t.dataSync()) as [Float32Array, Float32Array, Float32Array, Float32Array]), eps, width);
      expectClose(fused, exact, 1e-6, 'against float64');
      const composite = residualLayerNormComposite(x, residual, gamma, beta, eps).dataSync() as Float32Array;
      expect(maxAbsDiff(fused, exact).diff).toBeLessThanOrEqual(maxAbsDiff(composite, exact).diff);
    });
  });
});
