import * as tf from '@tensorflow/tfjs-core';
import type { WeightPacker } from '../../model/build-model.js';
import { codeWords, packedWords, type ModelWeight, type PackedProjection, type QuantizedProjection } from '../../model/projection.js';
import type { Q8TensorSource } from '../../weights/load.js';
import { quantizeWeight } from '../../weights/q8-codes.js';

/**
 * Makes a tensor of `words` int32 words on the active backend and has
 * `write` put a weight's kernel form (q8 codes, or packed float32 values, as
 * bytes) into its memory, where the backend's kernel reads it.
 */
export type CodePlacer = (words: number, write: (codes: Int8Array) => void) => tf.Tensor1D;

/**
 * Makes the tensor of a [K, N] weight's q8 codes: `write` puts the codes, in
 * the layout of `gemm-wat.ts`, into its first K · N bytes, and the placer
 * makes of them whatever its kernel reads (see `wasm-q8.ts`).
 */
export type QuantizedPlacer = (K: number, N: number, write: (codes: Int8Array) => void) => tf.Tensor1D;

/** Codes in a JavaScript-backed tensor (the cpu backend), as written. */
export const quantizedInJs: QuantizedPlacer = (K, N, write) => placeInJs(codeWords(K, N), write);

/** Reads in flight at once, each into its own staging buffer: as many as Node has I/O threads by default. */
const STAGING_BUFFERS = 4;

/**
 * Makes our kernels' forms of the projections as they are read: each weight
 * is read into one of a few reused staging buffers, checked, and made
 * (`make`) straight into backend memory; only that form is kept, and no
 * per-weight garbage is left for the collector.
 */
abstract class StagedPacker<Made extends ModelWeight> implements WeightPacker {
  /** Staging buffers not in use, and reads waiting for one. */
  private readonly free: Float32Array[] = [];
  private readonly waiting: ((buffer: Float32Array) => void)[] = [];
  private made = 0;


  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<Made | tf.Tensor> {
    const size = shape[0] * shape[1];
    let buffer = await this.acquire();
    try {
      if (buffer.length < size) buffer = new Float32Array(size);
      const target = buffer.subarray(0, size);
      await fill(target);
      checkFinite(target);
      return this.make(shape, target);
    } finally {
      this.release(buffer);
    }
  }

  packSync(shape: readonly number[], fill: (target: Float32Array) => void): Made | tf.Tensor {
    const size = shape[0] * shape[1];
    let buffer = this.free.pop() ?? new Float32Array(size);
    if (buffer.length < size) buffer = new Float32Array(size);
    try {
      const target = buffer.subarray(0, size);
      fill(target);
      return this.make(shape, target);
    } finally {
      this.free.push(buffer);
    }
  }

  finish(): void {
    this.free.length = 0;
  }

  private acquire(): Promise<Float32Array> {
    const buffer = this.free.pop();
    if (buffer !== undefined) return Promise.resolve(buffer);
    if (this.made < STAGING_BUFFERS) {
      this.made++;
      return Promise.resolve(new Float32Array(0));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(buffer: Float32Array): void {
    const next = this.waiting.shift();
    if (next !== undefined) next(buffer);
    else this.free.push(buffer);
  }

  /** The kernel's form of a checked [K, N] weight, in backend memory; the staging buffer is reused after. */
  protected abstract make(shape: readonly number[], weight: Float32Array): Made | tf.Tensor;
}

/**
 * Quantizes the projections as they are read (`dtype: 'q8'` from a float32,
 * float16 or bfloat16 checkpoint), per output column: only their int8 codes
 * and scales are kept, a quarter of their float32 size.
 */
export class QuantizingPacker extends StagedPacker<QuantizedProjection> {
  constructor(private readonly placeCodes: QuantizedPlacer) {
    super();
  }

  /** A q8 checkpoint's codes straight from the file into the backend's tensor. */
  packQ8([K, N]: readonly number[], source: Q8TensorSource): QuantizedProjection {
    const scales = source.readScales();
    const codes = this.placeCodes(K, N, (target) => source.readCodesInto(target.subarray(0, K * N)));
    try {
      return { codes, scales: tf.tensor1d(scales), inner: K };
    } catch (error) {
      codes.dispose();
      throw error;
    }
  }

  /** Codes straight into the backend's tensor, then the scales: only the int8 form is ever made. */
  protected make([K, N]: readonly number[], weight: Float32Array): QuantizedProjection {
    let scales: Float32Array | undefined;
    const codes = this.placeCodes(K, N, (target) => (scales = quantizeWeight(weight, K, N, target).scales));
    try {
      return { codes, scales: tf.tensor1d(scales!), inner: K };
    } catch (error) {
      codes.dispose();
      throw error;
    }
  }
}

/** Codes in a JavaScript-backed tensor (the cpu backend): from the tensor's start. */
export const placeInJs: CodePlacer = (words, write) => {
  const data = new Int32Array(words);
  write(new Int8Array(data.buffer));
  return tf.tensor1d(data, 'int32');
};

/**
 * Packs the float32 projections for our float32 kernel (`gemm_f32`), into
 * `[N/8][K][8]` in backend memory; only the packed copy is kept. A weight
 * whose output width is not a multiple of 8 stays a plain tensor, for tfjs's
 * own product.
 */
export class F32Packer extends StagedPacker<PackedProjection> {
  constructor(
    private readonly place: CodePlacer,
    private readonly plain: (shape: readonly number[], weight: Float32Array) => tf.Tensor,
  ) {
    super();
  }

  protected make([K, N]: readonly number[], weight: Float32Array): PackedProjection | tf.Tensor {
    if (N % 8 !== 0) return this.plain([K, N], weight);
    const packed = this.place(packedWords(K, N), (bytes) => packF32Weight(weight, K, N, new Float32Array(bytes.buffer, bytes.byteOffset, K * N)));
    return { packed, inner: K, columns: N };
  }
}

/** A [K, N] row-major float32 weight in the float32 kernel's layout: w(k, n) at ((n / 8) · K + k) · 8 + n mod 8. */
export function packF32Weight(weight: Float32Array, K: number, N: number, target: Float32Array = new Float32Array(K * N)): Float32Array {
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n += 8) {
      const at = n * K + k * 8;
      for (let c = 0; c < 8; c++) target[at + c] = weight[row + n + c];
    }
  }
  return target;
}
