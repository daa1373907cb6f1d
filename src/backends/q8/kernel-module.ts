import { readFileSync } from 'node:fs';
import { KERNEL_FOLDER, Q8_KERNEL_FILES } from './kernel-files.js';

/** The exports of the q8 kernel module; every argument is a byte address in the memory it was given, or a count. */
export interface Q8Kernels {
  quantize_rows(x: number, rows: number, k: number, codes: number, scales: number): void;
  gemm(
    codes: number,
    rowScales: number,
    m: number,
    k: number,
    weights: number,
    columnScales: number,
    n: number,
    out: number,
    rowBegin: number,
    rowEnd: number,
    columnBegin: number,
    columnEnd: number,
  ): void;
  gemm_f32(x: number, m: number, k: number, weights: number, n: number, out: number, rowBegin: number, rowEnd: number, columnBegin: number, columnEnd: number): void;
}

/**
 * The slice of the WebAssembly JavaScript API used here: the project compiles
 * against ES2022 and Node's types, which do not declare it.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: object };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const compiled = new Map<boolean, WasmModule>();

/** The compiled module for a shared or an unshared memory, read from the package's `wasm/` folder once. */
export function q8KernelModule(sharedMemory: boolean): WasmModule {
  let module = compiled.get(sharedMemory);
  if (module === undefined) {
    const file = new URL(sharedMemory ? Q8_KERNEL_FILES.shared : Q8_KERNEL_FILES.single, KERNEL_FOLDER);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      throw new Error(`the q8 kernels are missing (${file.pathname}): run \`npm run build\`, which assembles them`, { cause: error });
    }
    module = new Wasm.Module(bytes);
    compiled.set(sharedMemory, module);
  }
  return module;
}

/** The kernels running on `memory`: it must be the memory the module was built for (shared or not). */
export function instantiateQ8Kernels(memory: WasmMemory): Q8Kernels {
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  return new Wasm.Instance(q8KernelModule(shared), { env: { memory } }).exports as unknown as Q8Kernels;
}
