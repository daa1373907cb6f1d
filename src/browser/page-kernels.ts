import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { isSharedMemory, type WasmMemory, type WasmModule } from '../backends/q8/kernel-module.js';
import { Q8_KERNEL_FILES } from '../backends/q8/kernel-files.js';
import { HELPER_LOOP, helperControl, type ProductHelpers } from '../backends/q8/q8-threads.js';
import { installWasmQ8, wasmBackendMemory, wasmProductKernelsInstalled } from '../backends/q8/wasm-q8.js';

/** The slice of the browser's API used here, which the project's types (ES2022, Node) do not declare. */
interface PageWorker {
  postMessage(message: unknown): void;
  terminate(): void;
  addEventListener(type: 'message' | 'error', listener: (event: { data?: unknown; message?: string }) => void, options?: { once?: boolean }): void;
}
interface PageApi {
  WebAssembly: { compile(bytes: ArrayBuffer): Promise<WasmModule> };
  Worker: new (url: string) => PageWorker;
  Blob: new (parts: string[], options: { type: string }) => object;
  URL: { createObjectURL(blob: object): string; revokeObjectURL(url: string): void };
}
const page = globalThis as unknown as PageApi;

/** A helper: told its four values by message, says so, then runs the product loop until told to stop. */
const PAGE_HELPER = `onmessage = ({ data: { module, relaxed, memory, control } }) => {
  postMessage('ready');
${HELPER_LOOP}
  close();
};`;

/** A helper that has not said it is ready by then failed to start (a page's CSP may refuse blob: workers). */
const HELPER_START_MS = 10_000;

/**
 * Our product kernels in a page, as in Node: the module fetched from
 * `url(file)` and compiled, instantiated on tfjs's heap, and on the threaded
 * build `helpers` Web Workers sharing it. The workers are started and
 * waited for here, before any product: a page's main thread cannot block,
 * so the pool spins on their answers, and a worker starts only once the main
 * thread is free. Returns why they are not installed (the products then run
 * on XNNPACK), or undefined.
 */
export async function installPageKernels(url: (file: string) => string, helpers: number): Promise<string | undefined> {
  // A later load in the same page finds them running: no second module, no helpers left idle.
  if (wasmProductKernelsInstalled()) return undefined;
  const memory = wasmBackendMemory();
  if (memory === undefined) return 'the wasm backend has not started';
  const shared = isSharedMemory(memory);
  const file = shared ? Q8_KERNEL_FILES.shared : Q8_KERNEL_FILES.single;
  let module: WasmModule;
  try {
    const response = await fetch(url(file));
    if (!response.ok) return `our product kernels could not be fetched (${url(file)}: HTTP ${response.status}); the products run on XNNPACK`;
    module = await page.WebAssembly.compile(await response.arrayBuffer());
  } catch (error) {
    return `our product kernels could not be loaded from ${url(file)} (${(error as Error).message}); the products run on XNNPACK`;
  }
  const relaxed = await compileRelaxed(url(shared ? Q8_KERNEL_FILES.relaxedShared : Q8_KERNEL_FILES.relaxedSingle));
  let threads: ProductHelpers | undefined;
  if (shared && helpers > 0) {
    try {
      threads = await startPageHelpers(module, 'module' in relaxed ? relaxed.module : undefined, memory, helpers);
    } catch (error) {
      return `${(error as Error).message}; the products run on XNNPACK`;
    }
  }
  return installWasmQ8(version_wasm, {
    module: () => module,
    relaxedModule: () => {
      if ('module' in relaxed) return relaxed.module;
      throw new Error(relaxed.failure);
    },
    helpers: () => threads,
  });
}

/** The relaxed-SIMD product module, or why there is none: a browser without relaxed SIMD refuses to compile it, and q8 then runs on the baseline kernel. */
async function compileRelaxed(location: string): Promise<{ module: WasmModule } | { failure: string }> {
  try {
    const response = await fetch(location);
    if (!response.ok) return { failure: `${location}: HTTP ${response.status}` };
    return { module: await page.WebAssembly.compile(await response.arrayBuffer()) };
  } catch (error) {
    return { failure: (error as Error).message };
  }
}

async function startPageHelpers(module: WasmModule, relaxed: WasmModule | undefined, memory: WasmMemory, count: number): Promise<ProductHelpers> {
  const control = helperControl(count);
  const source = page.URL.createObjectURL(new page.Blob([PAGE_HELPER], { type: 'text/javascript' }));
  const workers: PageWorker[] = [];
  try {
    await Promise.all(
      Array.from({ length: count }, () => {
        const worker = new page.Worker(source);
        workers.push(worker);
        return new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`a product helper did not start within ${HELPER_START_MS / 1000} s`)), HELPER_START_MS);
          worker.addEventListener('message', () => (clearTimeout(timer), resolve()), { once: true });
          worker.addEventListener('error', (event) => (clearTimeout(timer), reject(new Error(`a product helper failed to start: ${event.message ?? 'unknown error'}`))), { once: true });
          worker.postMessage({ module, relaxed, memory, control: control.buffer });
        });
      }),
    );
  } catch (error) {
    for (const worker of workers) worker.terminate();
    throw error;
  } finally {
    page.URL.revokeObjectURL(source);
  }
  return { control, threads: workers };
}
