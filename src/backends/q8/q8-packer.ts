import * as tf from '@tensorflow/tfjs-core';
import type { WeightPacker } from '../../model/build-model.js';
import type { Q8TensorSource } from '../../weights/load.js';
import { codeWords, type QuantizedProjection } from '../../model/projection.js';
import { quantizeWeight } from '../../weights/q8-codes.js';

/**
 * Makes a codes tensor of `words` int32 words on the active backend and has
 * `write` put a weight's packed codes into its memory, where the backend's
 * q8 kernel reads them.
 */
export type CodePlacer = (words: number, write: (codes: Int8Array) => void) => tf.Tensor1D;

/** Reads in flight at once, each into its own staging buffer: as many as Node has I/O threads by default. */
const STAGING_BUFFERS = 4;

/**
 * Quantizes the projections as they are read (`dtype: 'q8'` from a float32,
 * float16 or bfloat16 checkpoint): each weight is read into one of a few
 * reused staging buffers, checked, and quantized per output column straight
 * into backend memory; only its int8 codes and scales are kept, a quarter of
 * its float32 size, and no per-weight garbage is left for the collector.
 */
export class QuantizingPacker implements WeightPacker {
  /** Staging buffers not in use, and reads waiting for one. */
  private readonly free: Float32Array[] = [];
  private readonly waiting: ((buffer: Float32Array) => void)[] = [];
  private made = 0;

  constructor(private readonly place: CodePlacer) {}

  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<QuantizedProjection> {
    const size = shape[0] * shape[1];
    let buffer = await this.acquire();
    try {
      if (buffer.length < size) buffer = new Float32Array(size);
      const target = buffer.subarray(0, size);
      await fill(target);
      checkFinite(target);
      return this.quantize(shape, target);
    } finally {
      this.release(buffer);
    }
  }

  packSync(shape: readonly number[], fill: (target: Float32Array) => void): QuantizedProjection {
    const size = shape[0] * shape[1];
    let buffer = this.free.pop() ?? new Float32Array(size);
    if (buffer.length < size) buffer = new Float32Array(size);
    try {
      const target = buffer.subarray(0, size);
      fill(target);
      return this.quantize(shape, target);
    } finally {
      this.free.push(buffer);
    }
  }

  /** A q8 checkpoint's codes straight from the file into the backend's tensor. */
  packQ8([K, N]: readonly number[], source: Q8TensorSource): QuantizedProjection {
    const scales = source.readScales();
    const codes = this.place(codeWords(K, N), (target) => source.readCodesInto(target.subarray(0, K * N)));
    try {
      return { codes, scales: tf.tensor1d(scales), inner: K };
    } catch (error) {
      codes.dispose();
      throw error;
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

  /** Codes straight into the backend's tensor, then the scales: only the int8 form is ever made. */
  private quantize([K, N]: readonly number[], weight: Float32Array): QuantizedProjection {
    let scales: Float32Array | undefined;
    const codes = this.place(codeWords(K, N), (target) => (scales = quantizeWeight(weight, K, N, target).scales));
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
