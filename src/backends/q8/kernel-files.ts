/** The assembled kernel modules, in the package's `wasm/` folder (see `scripts/build-wasm.ts`). */
export const Q8_KERNEL_FILES = {
  /** For the single-threaded build's heap. */
  single: 'q8-kernels.wasm',
  /** For the threaded build's shared heap. */
  shared: 'q8-kernels-shared.wasm',
  /** The q8 product on relaxed SIMD (`relaxed-wat.ts`), for each heap: compiled only where the engine has it. */
  relaxedSingle: 'q8-kernels-relaxed.wasm',
  relaxedShared: 'q8-kernels-relaxed-shared.wasm',
} as const;

/** The folder holding them, from this module in `src/` or in `dist/` (both sit at the package's top). */
export const KERNEL_FOLDER = new URL('../../../wasm/', import.meta.url);
