import * as tf from '@tensorflow/tfjs-core';
import { MASKED_SCORE } from '../../src/model/attention.js';
import { applyRotary, stackedRotaryTables } from '../../src/model/rotary.js';

/** What the fused attention kernels (WebGPU's, wasm's) are tested against. */

/** The tfjs composite the fused attention kernel replaces: transposes, rotary, scale, softmax attention, transpose back. */
export function compositeAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  tables: { cos: tf.Tensor3D; sin: tf.Tensor3D },
  bias: tf.Tensor4D,
  scale: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [R, T, half] = tables.cos.shape;
    const rotary = { cos: tf.reshape(tables.cos, [R, 1, T, half]) as tf.Tensor4D, sin: tf.reshape(tables.sin, [R, 1, T, half]) as tf.Tensor4D };
    const heads = (x: tf.Tensor4D) => tf.transpose(x, [0, 2, 1, 3]) as tf.Tensor4D; // [B, H, T, hd]
    const queries = tf.mul(applyRotary(heads(q), rotary), scale) as tf.Tensor4D;
    const keys = applyRotary(heads(k), rotary);
    const context = tf.matMul(tf.softmax(tf.add(tf.matMul(queries, keys, false, true), bias)), heads(v));
    return tf.transpose(context, [0, 2, 1, 3]) as tf.Tensor4D; // [B, T, H, hd]
  });
}

/** Rotary tables [R, T, hd/2]: one per row when `perRow`, each with its own base, as NTK scaling makes them. */
export function attentionTables(B: number, T: number, hd: number, perRow: boolean) {
  const rows = perRow ? B : 1;
  const { cos, sin } = stackedRotaryTables(Array.from({ length: rows }, (_, r) => 1000 * (r + 1)), hd, T);
  return { cos: tf.tensor3d(cos, [rows, T, hd / 2]), sin: tf.tensor3d(sin, [rows, T, hd / 2]) };
}

/** [B, 1, 1, T] bias masking the last `padding[b]` keys of row b. */
export function paddingBias(B: number, T: number, padding: (b: number) => number): tf.Tensor4D {
  const values = new Float32Array(B * T);
  for (let b = 0; b < B; b++) values.fill(MASKED_SCORE, b * T + T - padding(b), (b + 1) * T);
  return tf.tensor4d(values, [B, 1, 1, T]);
}

/** Rotary attention of one sequence ([T, H, hd], one rotary table [T, hd/2]) in float64, without a mask. */
export function attentionFloat64(Q: Float32Array, K: Float32Array, V: Float32Array, cos: Float32Array, sin: Float32Array, [T, H, hd]: number[], scale: number): Float64Array {
  const half = hd / 2;
  const rotated = (x: Float32Array, t: number, h: number) => {
    const at = (t * H + h) * hd;
    const out = new Float64Array(hd);
    for (let d = 0; d < half; d++) {
      const [x1, x2, c, s] = [x[at + d], x[at + d + half], cos[t * half + d], sin[t * half + d]];
      out[d] = x1 * c - x2 * s;
      out[d + half] = x2 * c + x1 * s;
    }
    return out;
  };
  const result = new Float64Array(T * H * hd);
  for (let h = 0; h < H; h++) {
    const keys = Array.from({ length: T }, (_, j) => rotated(K, j, h));
    for (let t = 0; t < T; t++) {
      const query = rotated(Q, t, h);
      const scores = keys.map((key) => scale * key.reduce((sum, kd, d) => sum + kd * query[d], 0));
      const top = Math.max(...scores);
      const weights = scores.map((score) => Math.exp(score - top));
      const total = weights.reduce((a, b) => a + b, 0);
      for (let d = 0; d < hd; d++) {
        result[(t * H + h) * hd + d] = weights.reduce((sum, w, j) => sum + w * V[(j * H + h) * hd + d], 0) / total;
      }
    }
  }
  return result;
}

export function maxAbsError(actual: ArrayLike<number>, exact: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < exact.length; i++) worst = Math.max(worst, Math.abs(actual[i] - exact[i]) || (Number.isNaN(actual[i]) ? Infinity : 0));
  return worst;
}
