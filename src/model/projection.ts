import * as tf from '@tensorflow/tfjs-core';

/**
 * The encoder's matrix products by its weights: a float32 [K, N] matrix, or
 * that matrix as int8 codes with one float32 scale per output column
 * (`dtype: 'q8'`), which backends with the kernel below multiply by directly.
 */

/** x [M, K] times a quantized [K, N] weight: inputs `x`, `codes`, `scales`; returns float32 [M, N]. */
export const Q8_MATMUL = 'NomicQ8MatMul';

/** The weight precisions a model can be loaded in: float32 as the checkpoint gives it, or int8 projections. */
export const DTYPES = ['fp32', 'q8'] as const;
export type Dtype = (typeof DTYPES)[number];

export interface QuantizedProjection {
  /**
   * int32 words holding the [K, N] int8 codes in the kernels' packed layout
   * (`backends/q8/gemm-wat.ts`), from the first 64-byte boundary of the
   * tensor's memory on the wasm heap (from its start elsewhere), with room
   * for that alignment after them.
   */
  readonly codes: tf.Tensor1D;
  /** float32 [N]: one scale per output column. */
  readonly scales: tf.Tensor1D;
  /** K, the input width. */
  readonly inner: number;
}

export type Projection = tf.Tensor2D | QuantizedProjection;
/** What a model holds under a weight's name. */
export type ModelWeight = tf.Tensor | QuantizedProjection;

/** Where the codes start in wasm memory: a boundary of this many bytes (8-byte-aligned weights ran 20% slower). */
export const CODE_ALIGNMENT_BYTES = 64;

/** int32 words a quantized [K, N] weight's codes take, alignment room included. */
export function codeWords(K: number, N: number): number {
  return (K * N + CODE_ALIGNMENT_BYTES) / 4;
}

export function isQuantized(weight: ModelWeight): weight is QuantizedProjection {
  return !(weight instanceof tf.Tensor);
}

/** x [M, K] · weight [K, N] → [M, N]. The caller disposes the result. */
export function project(x: tf.Tensor2D, weight: Projection): tf.Tensor2D {
  if (!isQuantized(weight)) return tf.matMul(x, weight);
  if (x.shape[1] !== weight.inner) throw new Error(`a q8 product of width ${x.shape[1]} by a weight of input width ${weight.inner}`);
  return tf.engine().runKernel(Q8_MATMUL, { x, codes: weight.codes, scales: weight.scales }) as tf.Tensor2D;
}

export function disposeWeight(weight: ModelWeight): void {
  if (isQuantized(weight)) {
    weight.codes.dispose();
    weight.scales.dispose();
  } else {
    weight.dispose();
  }
}
