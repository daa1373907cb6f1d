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
  /** See `layer-wat.ts`. */
  layer_norm(x: number, residual: number, gamma: number, beta: number, rows: number, width: number, epsilon: number, out: number): void;
  attention(
    q: number,
    k: number,
    v: number,
    cos: number,
    sin: number,
    tableRows: number,
    bias: number,
    B: number,
    T: number,
    H: number,
    hd: number,
    scale: number,
    out: number,
    scratch: number,
  ): void;
  swiglu(gate: number, up: number, count: number, out: number): void;
  first_non_finite(x: number, count: number): number;
}

/**
 * The slice of the WebAssembly JavaScript API used here: the project compiles
 * against ES2022 and Node's types, which do not declare it.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
/** A compiled kernel module: `WebAssembly.Module`, which the project's types do not declare. */
export type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: object };
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** A memory of `pages` 64 KiB pages of its own, of the kind a module built for `shared` memory (or not) imports, for kernels tried apart from tfjs's heap. */
export function newKernelMemory(pages: number, shared: boolean): WasmMemory {
  return new Wasm.Memory(shared ? { initial: pages, maximum: 65536, shared: true } : { initial: pages });
}

/** Whether `memory` is shared (the threaded build's heap): the kernel module must be the one built for it. */
export function isSharedMemory(memory: WasmMemory): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
}

/** Compiles an assembled kernel module (Node reads it from the package, a page fetches it). */
export function compileQ8Kernels(bytes: Uint8Array): WasmModule {
  return new Wasm.Module(bytes);
}

/** The kernels of `module` running on `memory`, which must be the kind of memory the module was built for (shared or not). */
export function instantiateQ8Kernels(module: WasmModule, memory: WasmMemory): Q8Kernels {
  return new Wasm.Instance(module, { env: { memory } }).exports as unknown as Q8Kernels;
}

/** The exports of the relaxed-SIMD module (`relaxed-wat.ts`). */
export interface RelaxedKernels {
  quantize_rows_relaxed(x: number, rows: number, k: number, codes: number, scales: number): void;
  relax_codes(weights: number, k: number, n: number): void;
  gemm_relaxed: Q8Kernels['gemm'];
}

/** The relaxed kernels of `module` on `memory` (of the kind it was built for). */
export function instantiateRelaxedKernels(module: WasmModule, memory: WasmMemory): RelaxedKernels {
  return new Wasm.Instance(module, { env: { memory } }).exports as unknown as RelaxedKernels;
}
