import * as tf from '@tensorflow/tfjs-core';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { WASM_INTERNALS_VERSION, type WasmBackendInternals } from './wasm-internals.js';

/**
 * A replacement for the wasm backend's Slice kernel (tfjs 4.22).
 *
 * The shipped kernel starts with `backend.readSync(x)`, which copies the whole
 * input out of the WebAssembly heap on every call: taking one head's [T, hd]
 * from a [B·H, T, hd] tensor costs a copy of all B·H heads, and `unstack` or
 * `split` into n parts costs n full copies. This kernel reads the input through
 * a view of the heap instead, so a slice costs its own size. Results are the
 * same element for element; strings, which live outside the heap, go to the
 * original kernel.
 */

type SliceArgs = { inputs: { x: tf.TensorInfo }; attrs: { begin: number | number[]; size?: number | number[] }; backend: WasmBackendInternals };

let installed = false;

/**
 * The tfjs-backend-wasm release this kernel was written against: it reads the
 * backend's heap through `typedArrayFromHeap` and allocates with `makeOutput`,
 * internals another release may change. Any other version keeps its own kernel.
 */
export const WASM_SLICE_FOR_VERSION = WASM_INTERNALS_VERSION;

/**
 * Installs the kernel once per process; call after the wasm backend is
 * registered. Returns why it was not installed, or undefined when it is.
 */
export function installWasmSlice(wasmVersion: string = version_wasm): string | undefined {
  if (wasmVersion !== WASM_SLICE_FOR_VERSION) {
    return (
      `@tensorflow/tfjs-backend-wasm ${wasmVersion} is not ${WASM_SLICE_FOR_VERSION}, the version this package's Slice kernel ` +
      `was written for; its own kernel stays (per-head attention runs slower)`
    );
  }
  if (installed) return undefined;
  const failure = replaceWasmKernel<SliceArgs>('Slice', (args, original) => {
    const { x } = args.inputs;
    if (x.dtype === 'string') return original(args);
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, args.attrs.begin, args.attrs.size);
    const out = args.backend.makeOutput(size, x.dtype);
    // Views are taken after the allocation, which may grow (and so detach) the heap.
    const source = args.backend.typedArrayFromHeap(x);
    const target = args.backend.typedArrayFromHeap(out);
    copySlice(source, x.shape, begin, size, target);
    return out;
  });
  installed = failure === undefined;
  return failure;
}

/**
 * Registers `kernel` for the wasm backend in place of tfjs's own, which it
 * gets as `original` for the cases it leaves alone. Returns why it could not.
 */
export function replaceWasmKernel<A>(name: string, kernel: (args: A, original: (args: A) => tf.TensorInfo) => tf.TensorInfo): string | undefined {
  const shipped = tf.getKernel(name, 'wasm');
  if (shipped === undefined) return 'the wasm backend is not registered';
  const original = (args: A) => shipped.kernelFunc(args as never) as tf.TensorInfo;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: ((args: A) => kernel(args, original)) as unknown as tf.KernelFunc });
  return undefined;
}

/** Copies the block at `begin` of extent `size` from a row-major array of `shape`. */
export function copySlice(
  source: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  target: { set(values: ArrayLike<number>, offset: number): void },
): void {
  const rank = shape.length;
  const strides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) strides[d] = strides[d + 1] * shape[d + 1];
  // Trailing axes taken whole form one contiguous run per copy.
  let inner = rank - 1;
  while (inner > 0 && begin[inner] === 0 && size[inner] === shape[inner]) inner--;
  const run = size.slice(inner).reduce((a, b) => a * b, 1);
  const outer = size.slice(0, inner);
  const count = outer.reduce((a, b) => a * b, 1);
  const index = new Array<number>(inner).fill(0);
  for (let n = 0, offset = 0; n < count; n++, offset += run) {
    let start = begin[inner] * strides[inner];
    for (let d = 0; d < inner; d++) start += (begin[d] + index[d]) * strides[d];
    target.set(source.subarray(start, start + run), offset);
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d] < outer[d]) break;
      index[d] = 0;
    }
  }
}
