import * as tf from '@tensorflow/tfjs-core';
import { WASM_INTERNALS_VERSION, type WasmBackendInternals } from './wasm-internals.js';
import { replaceWasmKernel } from './wasm-slice.js';

/**
 * A faster path for the wasm backend's GatherV2 (tfjs 4.22) where the model
 * uses it: rows of a matrix by index (the word and token-type embeddings).
 *
 * The shipped kernel's C++ computes every element's address from strides: 38
 * ns an element, so gathering 512 rows of the real model's 768-wide word
 * embeddings took 20 ms, and the token types as long again. Here each row is
 * one copy between views of the heap (a memcpy). Results are the same
 * element for element; every other form of gather (another axis, batch
 * dimensions, strings) goes to the original kernel.
 */

type GatherArgs = { inputs: { x: tf.TensorInfo; indices: tf.TensorInfo }; attrs: { axis: number; batchDims: number }; backend: WasmBackendInternals };

let installed = false;

/**
 * Installs the kernel once per process, on the release the Slice kernel was
 * written for (it reads the heap through the same internals); call after the
 * wasm backend is registered. Returns why it was not installed, or undefined.
 */
export function installWasmGather(wasmVersion: string): string | undefined {
  if (wasmVersion !== WASM_INTERNALS_VERSION) return `@tensorflow/tfjs-backend-wasm ${wasmVersion}: its own GatherV2 kernel stays`;
  if (installed) return undefined;
  const failure = replaceWasmKernel<GatherArgs>('GatherV2', (args, original) => {
    const { x, indices } = args.inputs;
    const axis = tf.util.parseAxisParam(args.attrs.axis, x.shape)[0];
    const rowsOfMatrix = axis === 0 && (args.attrs.batchDims ?? 0) === 0 && x.shape.length === 2 && x.dtype !== 'string' && indices.dtype === 'int32';
    if (!rowsOfMatrix) return original(args);
    const [rows, width] = x.shape;
    const count = tf.util.sizeFromShape(indices.shape);
    const out = args.backend.makeOutput([...indices.shape, width], x.dtype);
    // Views are taken after the allocation, which may grow (and so detach) the heap.
    const source = args.backend.typedArrayFromHeap(x);
    const ids = args.backend.typedArrayFromHeap(indices);
    const target = args.backend.typedArrayFromHeap(out);
    gatherRows(source, rows, width, ids.subarray(0, count), target);
    return out;
  });
  installed = failure === undefined;
  return failure;
}

/** Copies row `ids[i]` of a row-major [rows, width] matrix to row i of `target`; an index out of range throws as tfjs does. */
export function gatherRows(
  source: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
  rows: number,
  width: number,
  ids: ArrayLike<number>,
  target: { set(values: ArrayLike<number>, offset: number): void },
): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(id >= 0 && id <= rows - 1)) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
    target.set(source.subarray(id * width, (id + 1) * width), i * width);
  }
}
