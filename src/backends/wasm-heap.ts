import * as tf from '@tensorflow/tfjs-core';
import type { SlotAllocator, WeightSlot } from '../model/build-model.js';
import { firstNonFinite } from '../weights/load.js';

interface WasmModuleLike {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAPU8?: Uint8Array;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

/**
 * Makes a weight tensor in the wasm heap and has its source fill it there:
 * the file is read straight into backend memory, with no JavaScript copy to
 * make and collect (550 MB of garbage whose collection otherwise fell into
 * the first call).
 */
export function allocateInWasmHeap(shape: readonly number[], fill: (target: Float32Array) => void): tf.Tensor {
  // The view is taken after the allocation, which may have grown (and so detached) the heap.
  const { tensor, target } = heapSlot(shape);
  try {
    fill(target);
  } catch (error) {
    tensor.dispose();
    throw error;
  }
  return tensor;
}

/**
 * A weight's tensor in the wasm heap, with a view of its memory to fill
 * later, or undefined when the heap may move: only shared memory (the
 * threaded build's) keeps earlier views valid when later tensors grow it.
 */
export function wasmHeapSlots(): SlotAllocator | undefined {
  const wasm = (tf.backend() as unknown as { wasm?: WasmModuleLike }).wasm;
  if (typeof SharedArrayBuffer === 'undefined' || !(wasm?.HEAPU8?.buffer instanceof SharedArrayBuffer)) return undefined;
  return heapSlot;
}

/** A float32 tensor in the wasm heap and a view of its memory, valid until the heap next grows (unless shared). */
function heapSlot(shape: readonly number[]): WeightSlot {
  const backend = tf.backend() as unknown as WasmBackendLike;
  const info = backend.makeOutput([...shape], 'float32');
  const tensor = tf.engine().makeTensorFromTensorInfo(info);
  const large = shape.length === 2 && shape[0] * shape[1] >= ROW_SUM_CHECK_MIN_VALUES;
  return { target: backend.typedArrayFromHeap(info), tensor, allFinite: large ? () => rowSumsFinite(tensor as tf.Tensor2D) : undefined };
}

/** Below this, a JavaScript pass over the values is as quick as a product and its read-back. */
const ROW_SUM_CHECK_MIN_VALUES = 1 << 16;

/**
 * Whether every value of a [R, C] weight is finite, told by one product, the
 * weight times a column of ones: a row holding a NaN or an infinity sums to
 * NaN or an infinity (so does a row of huge finite values whose sum
 * overflows; the loader then looks for itself and finds nothing). The weight
 * is the left operand, which XNNPACK reads as it is, without packing a copy:
 * on the real model's word embeddings (23M values) this takes 9–14 ms against
 * 46–52 ms for the loader's own pass.
 */
function rowSumsFinite(weight: tf.Tensor2D): boolean {
  return productAllFinite(() => tf.matMul(weight, tf.ones([weight.shape[1], 1])));
}

/**
 * Packs a projection weight for XNNPACK now: the wasm backend's matMul packs
 * its right operand on first use and keeps the packing for later products
 * of any height, so a one-row product is enough. Returns whether every value
 * of the weight is finite, which that product tells for free: a row of zeros
 * times the weight is NaN in exactly the columns holding a NaN or an
 * infinity (0·±∞ is NaN), and 0 elsewhere. That spares the loader its own
 * pass over 450 MB of projections (about 0.2 s of the real model's start).
 */
export function packForXnnpack(weight: tf.Tensor2D): boolean {
  return productAllFinite(() => tf.matMul(tf.zeros([1, weight.shape[0]]), weight));
}

/**
 * Runs `product` (always: it may do work of its own, as packing) and tells
 * whether all of its values are finite; false also where the backend's
 * products may drop a NaN, which leaves the check to the caller.
 */
function productAllFinite(product: () => tf.Tensor): boolean {
  const result = tf.tidy(product);
  try {
    return productsKeepNaN() && firstNonFinite(result.dataSync() as Float32Array) < 0;
  } finally {
    result.dispose();
  }
}

/**
 * Whether the backend's matMul carries a NaN through, as IEEE arithmetic
 * does (a kernel that clamped its output with a NaN-dropping max would not):
 * asked once per backend instance; without it, the loader checks the values.
 */
function productsKeepNaN(): boolean {
  const backend = tf.backend();
  let answer = nanChecked.get(backend);
  if (answer === undefined) {
    const weight = new Float32Array(8 * 16).fill(1);
    weight[5 * 16 + 11] = NaN;
    const row = tf.tidy(() => tf.matMul(tf.zeros([1, 8]), tf.tensor2d(weight, [8, 16])).dataSync() as Float32Array);
    answer = row.every((x, column) => Number.isNaN(x) === (column === 11));
    nanChecked.set(backend, answer);
  }
  return answer;
}
const nanChecked = new WeakMap<object, boolean>();

/**
 * Grows the wasm backend's heap to `bytes` in one step, before the weights
 * and the first batches ask for it piece by piece. Every growth of a shared
 * WebAssembly memory (the threaded build's) is slow: uploading 550 MB of
 * weights in 9 MB pieces took 1.1 s, against 50 ms into a heap grown once.
 * The block is freed at once, so its pages stay untouched (not resident)
 * until tensors use them. A no-op on other backends, or when the heap cannot
 * grow that far (the tensors then grow it as they come).
 */
export function reserveWasmHeap(bytes: number): void {
  if (tf.getBackend() !== 'wasm') return;
  const wasm = (tf.backend() as unknown as { wasm?: WasmModuleLike }).wasm;
  if (wasm === undefined) return;
  // The heap tops out at 4 GiB; a reservation near it would only fail.
  const size = Math.min(Math.ceil(bytes), 3.5 * 2 ** 30);
  const pointer = wasm._malloc(size);
  if (pointer !== 0) wasm._free(pointer);
}
