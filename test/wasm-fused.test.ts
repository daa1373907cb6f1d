import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { FUSED_MAX_LENGTH, POLICIES } from '../src/backends/policy.js';
import { simdFirstNonFinite, simdResidualLayerNorm } from '../src/backends/q8/simd-layers.js';
import { firstNonFinite } from '../src/weights/load.js';
import type { WasmBackendInternals } from '../src/backends/wasm-internals.js';
import {
  FUSED_ATTENTION,
  fusedAttention,
  fusedSwiglu,
  hasFusedKernel,
  RESIDUAL_LAYER_NORM,
  residualLayerNorm,
  residualLayerNormComposite,
  ROTARY_HEADS,
  rotaryHeads,
  rotaryHeadsComposite,
  SWIGLU,
} from '../src/model/fused-ops.js';
import { stackedRotaryTables, type RotaryTables } from '../src/model/rotary.js';
import { useBackend } from './helpers/backend.js';
import { attentionFloat64, attentionTables, compositeAttention, maxAbsError, paddingBias } from './helpers/attention.js';
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
    expect(hasFusedKernel(FUSED_ATTENTION)).toBe(true);
    expect(hasFusedKernel(SWIGLU)).toBe(true);
  });

  it('the wasm policy runs batches up to FUSED_MAX_LENGTH through our attention kernel, longer ones and odd heads through tfjs', () => {
    const attention = POLICIES.wasm.attention;
    expect(attention(1, 64)).toBe('fused');
    expect(attention(FUSED_MAX_LENGTH, 64)).toBe('fused');
    expect(attention(FUSED_MAX_LENGTH, 16)).toBe('fused');
    expect(attention(FUSED_MAX_LENGTH + 1, 64)).toBe('per-head');
    // Half-heads of 3 and 5 floats are not whole vectors: tfjs's ops take them.
    expect(attention(8, 12)).toBe('batched');
    expect(attention(64, 10)).toBe('per-head');
    expect(attention(2048, 64)).toBe('per-head');
  });

  /** Both compute in float32 with other summation orders (and our exp is within 1 ulp of the exact one). */
  const KERNEL_TOLERANCE = 1e-5;

  it.each([
    [1, 1, 1, 8, false],
    [2, 5, 3, 16, false],
    [3, 7, 4, 16, true],
    [2, 37, 12, 64, true],
    [1, 64, 2, 64, false],
    [2, 130, 2, 32, true],
    // Longer than the policy sends it, which it must still compute right.
    [1, 300, 1, 16, false],
  ])('rotary attention of B=%i, T=%i, H=%i, hd=%i (a table per row: %s) with padded keys equals the composite', (B, T, H, hd, perRow) => {
    tf.tidy(() => {
      const [q, k, v] = [1, 2, 3].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
      const rotary = attentionTables(B, T, hd, perRow);
      // Row 0 unpadded; the others lose up to half their keys, so lengths that are no multiple of 4 are met.
      const bias = paddingBias(B, T, (b) => Math.floor((b * T) / (2 * B)));
      const scale = 1 / Math.sqrt(hd);
      const fused = fusedAttention(q, k, v, rotary, bias, scale);
      expect(fused.shape).toEqual([B, T, H, hd]);
      expectClose(fused.dataSync(), compositeAttention(q, k, v, rotary, bias, scale).dataSync(), KERNEL_TOLERANCE, `attention [${B}, ${T}, ${H}, ${hd}]`);
    });
  });

  it('attention ignores what padded keys hold, bit for bit, and each query sees only its own sequence', () => {
    tf.tidy(() => {
      const [B, T, H, hd] = [3, 11, 2, 16];
      const [q, k, v] = [4, 5, 6].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
      const rotary = attentionTables(B, T, hd, false);
      const padding = (b: number) => 2 * b + 1;
      const bias = paddingBias(B, T, padding);
      const reference = fusedAttention(q, k, v, rotary, bias, 0.25).dataSync();
      // Other keys and values at the padded positions of every row.
      const padded = tf.tensor4d(Array.from({ length: B * T }, (_, i) => (i % T >= T - padding(Math.floor(i / T)) ? 1 : 0)).flatMap((m) => Array(H * hd).fill(m)), [B, T, H, hd]);
      const noise = tf.mul(padded, 1e4) as tf.Tensor4D;
      const changed = fusedAttention(q, tf.add(k, noise) as tf.Tensor4D, tf.add(v, noise) as tf.Tensor4D, rotary, bias, 0.25).dataSync();
      expect([...changed].filter((x, i) => !Object.is(x, reference[i])).length).toBe(0);
      // Row 1 alone, as a batch of one: the same values.
      const row = (t: tf.Tensor4D) => tf.slice(t, [1, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
      const alone = fusedAttention(row(q), row(k), row(v), rotary, tf.slice(bias, [1, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D, 0.25).dataSync();
      const rowOne = reference.slice(T * H * hd, 2 * T * H * hd);
      expect([...alone].filter((x, i) => !Object.is(x, rowOne[i])).length).toBe(0);
    });
  });

  it('attention with scores far from zero, where a naive softmax overflows, is no further from float64 than the composite', () => {
    tf.tidy(() => {
      const [B, T, H, hd] = [1, 50, 2, 16];
      const [q, k, v] = [4, 5, 6].map((seed) => tf.randomNormal([B, T, H, hd], 0, 1, 'float32', seed) as tf.Tensor4D);
      const rotary = attentionTables(1, T, hd, false);
      const fused = fusedAttention(q, k, v, rotary, undefined, 30).dataSync();
      const composite = compositeAttention(q, k, v, rotary, tf.zeros([1, 1, 1, T]) as tf.Tensor4D, 30).dataSync();
      const [Q, K, V, cos, sin] = [q, k, v, rotary.cos, rotary.sin].map((t) => t.dataSync() as Float32Array);
      const exact = attentionFloat64(Q, K, V, cos, sin, [T, H, hd], 30);
      expect(fused.every(Number.isFinite)).toBe(true);
      expect(maxAbsError(fused, exact)).toBeLessThanOrEqual(maxAbsError(composite, exact));
    });
  });

  it('attention refuses heads whose halves are not whole vectors, naming the size', () => {
    tf.tidy(() => {
      const q = tf.zeros([1, 4, 2, 12]) as tf.Tensor4D;
      expect(() => fusedAttention(q, q, q, attentionTables(1, 4, 12, false), undefined, 1)).toThrow(/multiple of 8 floats, not 12/);
    });
  });

  it("the loader's search for NaN and infinities runs in our SIMD kernel on the heap, with the JavaScript loop's answers", () => {
    const backend = tf.backend() as unknown as WasmBackendInternals;
    for (const length of [0, 3, 4, 9, 64, 1001]) {
      const info = backend.makeOutput([Math.max(length, 1)], 'float32');
      try {
        const view = (backend.typedArrayFromHeap(info) as Float32Array).subarray(0, length);
        // Finite extremes: the largest float, a subnormal, −0.
        view.set([3.4028234663852886e38, -1.4e-45, -0, 1].slice(0, length).concat(Array(Math.max(0, length - 4)).fill(0.5)));
        expect(simdFirstNonFinite(view), `all finite, length ${length}`).toBe(-1);
        for (const bad of [NaN, Infinity, -Infinity]) {
          // In a whole vector, in the last one, and among the values past the last whole vector.
          for (const at of new Set([0, Math.floor(length / 2), length - 1].filter((i) => i >= 0 && i < length))) {
            const kept = view[at];
            view[at] = bad;
            expect(simdFirstNonFinite(view), `${bad} at ${at} of ${length}`).toBe(at);
            expect(firstNonFinite(view)).toBe(at);
            expect(firstNonFinite(Float32Array.from(view))).toBe(at);
            view[at] = kept;
          }
        }
      } finally {
        tf.engine().makeTensorFromTensorInfo(info).dispose();
      }
    }
    // Memory of its own is not the heap: JavaScript searches it.
    expect(simdFirstNonFinite(new Float32Array([1, NaN]))).toBeUndefined();
    expect(firstNonFinite(new Float32Array([1, NaN]))).toBe(1);
  });

  it('LayerNorm runs in our SIMD kernel on rows of whole vectors, and in JavaScript on others', () => {
    tf.tidy(() => {
      const backend = tf.backend() as unknown as WasmBackendInternals;
      for (const [width, simd] of [[64, true], [10, false]] as const) {
        const [x, residual] = [1, 2].map((seed) => tf.randomNormal([3, width], 0, 1, 'float32', seed));
        const [gamma, beta] = [3, 4].map((seed) => tf.randomNormal([width], 0, 1, 'float32', seed));
        const out = backend.makeOutput([3, width], 'float32');
        expect(simdResidualLayerNorm(backend, { x, residual, gamma, beta }, 1e-12, out), `width ${width}`).toBe(simd);
        tf.engine().makeTensorFromTensorInfo(out).dispose();
      }
    });
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
    [5, 10, 1e-12],
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

  /** SwiGLU's step in float64 from the same float32 inputs. */
  const swigluFloat64 = (gate: Float32Array, up: Float32Array) => Float64Array.from(gate, (g, i) => (up[i] * g) / (1 + Math.exp(-g)));

  it.each([
    [1, 1],
    [3, 5],
    [37, 256],
    [22, 3072],
  ])('SwiGLU of [%i, %i] is within 3 ulp of float64, vectors and the last few values alike', (N, F) => {
    tf.tidy(() => {
      const gate = tf.randomNormal([N, F], 0, 4, 'float32', 11) as tf.Tensor2D;
      const up = tf.randomNormal([N, F], 0, 1, 'float32', 12) as tf.Tensor2D;
      const fused = fusedSwiglu(gate, up).dataSync() as Float32Array;
      const exact = swigluFloat64(gate.dataSync() as Float32Array, up.dataSync() as Float32Array);
      const ulps = (values: Float32Array) => Math.max(...Array.from(values, (v, i) => Math.abs(v - exact[i]) / (2 ** -23 * Math.max(Math.abs(exact[i]), 2 ** -126))));
      // Measured: at most 1.84 ulp here, where tfjs's composite (XNNPACK's sigmoid) is 2.53 from float64.
      expect(ulps(fused)).toBeLessThanOrEqual(3);
    });
  });

  // Below g = −87.34 our e^g is 0 (float32's exp is subnormal there), so the result is 0 where the exact one is under 1e-36.
  it('SwiGLU keeps NaN, and takes gates far past where e^x under- and overflows', () => {
    tf.tidy(() => {
      const gate = tf.tensor2d([[NaN, 100, -100, 0, -0.5, 0.5, 88, -88, 1e30, -1e30, 20]]);
      const up = tf.onesLike(gate);
      const fused = [...fusedSwiglu(gate as tf.Tensor2D, up as tf.Tensor2D).dataSync()];
      expect(fused[0]).toBeNaN();
      const exact = swigluFloat64(gate.dataSync() as Float32Array, up.dataSync() as Float32Array);
      fused.slice(1).forEach((v, i) => expect(Math.abs(v - exact[i + 1]), `gate ${gate.dataSync()[i + 1]}`).toBeLessThanOrEqual(4 * 2 ** -23 * Math.abs(exact[i + 1]) + 1e-36));
    });
  });

  it('SwiGLU refuses a gate and an up of different shapes, naming both', () => {
    tf.tidy(() => {
      expect(() => fusedSwiglu(tf.zeros([2, 8]) as tf.Tensor2D, tf.zeros([2, 4]) as tf.Tensor2D)).toThrow(/gate \[2,8\] and up \[2,4\]/);
    });
  });
});
