/**
 * Assembles the project's own WebAssembly kernels (`src/backends/q8/gemm-wat.ts`)
 * into `wasm/`, where the kernel loader finds them from `src/` and `dist/`
 * alike, and copies tfjs-backend-wasm's three builds into `wasm/tfjs/`, where
 * a page's loader points tfjs by default (bundlers copy them from there).
 * Part of `npm run build`; vitest's global set-up runs it as well, so the
 * tests always use kernels assembled from the current source.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabt from 'wabt';
import { q8KernelWat } from '../src/backends/q8/gemm-wat.js';
import { Q8_KERNEL_FILES } from '../src/backends/q8/kernel-files.js';
import { relaxedKernelWat } from '../src/backends/q8/relaxed-wat.js';

export async function buildWasm(): Promise<void> {
  const assembler = await wabt();
  const folder = fileURLToPath(new URL('../wasm/', import.meta.url));
  mkdirSync(folder, { recursive: true });
  // Baseline SIMD128 and shared memory only: what Node 20 and every current browser run without flags.
  const baseline = { simd: true, threads: true, sat_float_to_int: true };
  // The relaxed product, in modules of their own: used where the engine has relaxed SIMD and computes it exactly.
  const relaxed = { ...baseline, relaxed_simd: true };
  for (const [text, features, file] of [
    [q8KernelWat({ sharedMemory: false }), baseline, Q8_KERNEL_FILES.single],
    [q8KernelWat({ sharedMemory: true }), baseline, Q8_KERNEL_FILES.shared],
    [relaxedKernelWat({ sharedMemory: false }), relaxed, Q8_KERNEL_FILES.relaxedSingle],
    [relaxedKernelWat({ sharedMemory: true }), relaxed, Q8_KERNEL_FILES.relaxedShared],
  ] as const) {
    const module = assembler.parseWat(file, text, features);
    try {
      // wabt's validator takes the features again (its type says it takes none).
      (module.validate as (features: object) => void)(features);
      writeFileSync(`${folder}${file}`, module.toBinary({}).buffer);
    } finally {
      module.destroy();
    }
  }
  copyTfjsWasm(`${folder}tfjs/`);
}

/** The files tfjs-backend-wasm fetches at start, under the names it asks for (`setWasmPaths` maps those names). */
const TFJS_WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'] as const;

function copyTfjsWasm(target: string): void {
  const dist = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
  mkdirSync(target, { recursive: true });
  for (const file of TFJS_WASM_FILES) copyFileSync(join(dist, file), join(target, file));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildWasm();
