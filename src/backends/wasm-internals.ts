import type * as tf from '@tensorflow/tfjs-core';
import type { WasmMemory } from './q8/kernel-module.js';

/**
 * What our wasm kernels read of tfjs-backend-wasm beyond its public API, in
 * one place: each kernel is installed only on the release this was written
 * against, and any other keeps tfjs's own kernels (or refuses q8).
 */
export const WASM_INTERNALS_VERSION = '4.22.0';

/** The Emscripten module behind the backend. */
export interface EmscriptenModule {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAPU8: Uint8Array;
  /** The threaded build's shared memory. */
  wasmMemory?: WasmMemory;
  /** The single-threaded build's memory. */
  asm?: { memory?: WasmMemory };
}

export interface WasmBackendInternals {
  wasm: EmscriptenModule;
  /** Where each tensor's values lie in the heap. */
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  /** Allocates a tensor in the heap (at `memoryOffset` when given). */
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): tf.TensorInfo;
  /** A view of a tensor's values in the heap, valid until the heap next grows (unless it is shared). */
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}
