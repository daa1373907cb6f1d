/** The assembled kernel modules, in the package's `wasm/` folder (see `scripts/build-wasm.ts`). */
export const Q8_KERNEL_FILES = {
  /** For the single-threaded build's heap. */
  single: 'q8-kernels.wasm',
  /** For the threaded build's shared heap. */
  shared: 'q8-kernels-shared.wasm',
} as const;

/** The folder holding them, from this module in `src/` or in `dist/` (both sit at the package's top). */
export const KERNEL_FOLDER = new URL('../../../wasm/', import.meta.url);
