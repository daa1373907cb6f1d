import { readFileSync } from 'node:fs';
import { compileQ8Kernels, type WasmModule } from './kernel-module.js';
import { KERNEL_FOLDER, Q8_KERNEL_FILES } from './kernel-files.js';

const compiled = new Map<string, WasmModule>();

function compiledFile(name: string): WasmModule {
  let module = compiled.get(name);
  if (module === undefined) {
    const file = new URL(name, KERNEL_FOLDER);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      throw new Error(`the q8 kernels are missing (${file.pathname}): run \`npm run build\`, which assembles them`, { cause: error });
    }
    module = compileQ8Kernels(bytes);
    compiled.set(name, module);
  }
  return module;
}

/** Node: the compiled module for a shared or an unshared memory, read from the package's `wasm/` folder once. */
export function q8KernelModule(sharedMemory: boolean): WasmModule {
  return compiledFile(sharedMemory ? Q8_KERNEL_FILES.shared : Q8_KERNEL_FILES.single);
}

/** Node: the relaxed-SIMD product module; throws where the engine cannot compile relaxed SIMD (Node 20 without its flag). */
export function q8RelaxedKernelModule(sharedMemory: boolean): WasmModule {
  return compiledFile(sharedMemory ? Q8_KERNEL_FILES.relaxedShared : Q8_KERNEL_FILES.relaxedSingle);
}
