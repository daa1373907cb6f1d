import * as tf from '@tensorflow/tfjs-core';

/**
 * The encoder's matrix products by its weights: a float32 [K, N] matrix;
 * that matrix packed for our float32 kernel; or as int8 codes with one
 * float32 scale per output column (`dtype: 'q8'`). Backends with the kernels
 * below multiply by the last two directly.
 */

/** x [M, K] times a quantized [K, N] weight: inputs `x`, `codes`, `scales`; returns float32 [M, N]. */
export const Q8_MATMUL = 'NomicQ8MatMul';
/** x [M, K] times a packed float32 [K, N] weight: inputs `x`, `packed`, attribute `columns` (N); returns float32 [M, N]. */
export const F32_MATMUL = 'NomicF32MatMul';

/** The weight precisions a model can be loaded in: float32 as the checkpoint gives it, or int8 projections. */
export const DTYPES = ['fp32', 'q8'] as const;
export type Dtype = (typeof DTYPES)[number];

export interface QuantizedProjection {
  /**
   * int32 words holding the [K, N] int8 codes in the kernels' packed layout
   * (`backends/q8/gemm-wat.ts`, or on wasm with relaxed SIMD
   * `relaxed-wat.ts`'s, with its column sums after the codes), from the
   * first 64-byte boundary of the tensor's memory on the wasm heap (from its
   * start elsewhere), with room for that alignment after them.
   */
  readonly codes: tf.Tensor1D;
  /** float32 [N]: one scale per output column. */
  readonly scales: tf.Tensor1D;
  /** K, the input width. */
  readonly inner: number;
}

export interface PackedProjection {
  /**
   * int32 words holding the float32 [K, N] weight in the kernel's packed
   * layout, `[N/8][K][8]` (`backends/q8/gemm-wat.ts`), from the first 64-byte
   * boundary of the tensor's memory on the wasm heap, with room for that
   * alignment after them.
   */
  readonly packed: tf.Tensor1D;
  /** K, the input width. */
  readonly inner: number;
  /** N, the output width. */
  readonly columns: number;
}

export type Projection = tf.Tensor2D | QuantizedProjection | PackedProjection;
/** What a model holds under a weight's name. */
export type ModelWeight = tf.Tensor | QuantizedProjection | PackedProjection;

/** Where the codes start in wasm memory: a boundary of this many bytes (8-byte-aligned weights ran 20% slower). */
export const CODE_ALIGNMENT_BYTES = 64;

/**
 * int32 words a quantized [K, N] weight's codes take: the codes, then one
 * int32 per column for the relaxed kernel's sums (`relaxed-wat.ts`), and
 * alignment room.
 */
export function codeWords(K: number, N: number): number {
  return (K * N + 4 * N + CODE_ALIGNMENT_BYTES) / 4;
}

/** int32 words a packed float32 [K, N] weight takes, alignment room included. */
export function packedWords(K: number, N: number): number {
  return K * N + CODE_ALIGNMENT_BYTES / 4;
}

export function isQuantized(weight: ModelWeight): weight is QuantizedProjection {
  return 'codes' in weight;
}

export function isPacked(weight: ModelWeight): weight is PackedProjection {
  return 'packed' in weight;
}

/** x [M, K] · weight [K, N] → [M, N]. The caller disposes the result. */
export function project(x: tf.Tensor2D, weight: Projection): tf.Tensor2D {
  if (weight instanceof tf.Tensor) return tf.matMul(x, weight);
  if (x.shape[1] !== weight.inner) throw new Error(`a product of width ${x.shape[1]} by a weight of input width ${weight.inner}`);
  if (isPacked(weight)) return tf.engine().runKernel(F32_MATMUL, { x, packed: weight.packed }, { columns: weight.columns }) as tf.Tensor2D;
  return tf.engine().runKernel(Q8_MATMUL, { x, codes: weight.codes, scales: weight.scales }) as tf.Tensor2D;
}

export function disposeWeight(weight: ModelWeight): void {
  if (weight instanceof tf.Tensor) weight.dispose();
  else if (isPacked(weight)) weight.packed.dispose();
  else {
    weight.codes.dispose();
    weight.scales.dispose();
  }
}
