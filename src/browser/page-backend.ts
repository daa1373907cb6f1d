import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount, setThreadsCount, setWasmPaths, version_wasm } from '@tensorflow/tfjs-backend-wasm';
import type { BatchGuard } from '../backends/backend.js';
import { POLICIES, type BackendPolicy } from '../backends/policy.js';
import { installWasmFusedKernels } from '../backends/wasm-fused.js';
import { installWasmGather } from '../backends/wasm-gather.js';
import { allocateInWasmHeap } from '../backends/wasm-heap.js';
import { installWasmSlice } from '../backends/wasm-slice.js';
import { describeAdapter, type AdapterLike, type GpuAdapterReport } from '../backends/webgpu/adapter.js';
import { guardWebGpuBatch, startWebGpu } from '../backends/webgpu/device.js';
import { BackendError } from '../errors.js';
import type { TensorAllocator, WeightPacker } from '../model/build-model.js';
import { installCpuQ8 } from '../backends/q8/cpu-q8.js';
import { quantizedInJs, QuantizingPacker } from '../backends/q8/q8-packer.js';
import type { Dtype } from '../model/projection.js';
import { wasmKernelPacker, wasmProductKernelsInstalled } from '../backends/q8/wasm-q8.js';
import { installPageKernels } from './page-kernels.js';
import { yieldToEventLoop } from './yield.js';

/**
 * The backends of a web page: WebGPU through `navigator.gpu`, WebAssembly
 * (tfjs starts its threaded build itself where the page is cross-origin
 * isolated), and plain JavaScript. The same kernels as in Node are
 * registered; only the starting differs.
 */

export type PageBackendName = 'webgpu' | 'wasm' | 'cpu';
export type PageBackendChoice = PageBackendName | 'auto';
export const PAGE_BACKENDS: readonly PageBackendName[] = ['webgpu', 'wasm', 'cpu'];

/** The `.wasm` files tfjs-backend-wasm starts and our product kernels, as the package's `wasm/` and `wasm/tfjs/` hold them. */
export type WasmFileName =
  | 'tfjs-backend-wasm.wasm'
  | 'tfjs-backend-wasm-simd.wasm'
  | 'tfjs-backend-wasm-threaded-simd.wasm'
  | 'q8-kernels.wasm'
  | 'q8-kernels-shared.wasm'
  | 'q8-kernels-relaxed.wasm'
  | 'q8-kernels-relaxed-shared.wasm';

/**
 * Where the `.wasm` files are: a URL prefix ending in `/` that holds them
 * all, or a URL per file name (as tfjs's `setWasmPaths`; a file left out of
 * the map is taken from the package's copy).
 */
export type WasmPaths = string | Partial<Record<WasmFileName, string>>;

export interface StartedBackend {
  readonly policy: BackendPolicy;
  readonly guard: BatchGuard;
  readonly threads: number;
  readonly device?: GpuAdapterReport;
  /** How weights are made on it: straight into the wasm heap there, else tfjs's own upload. */
  readonly allocate?: TensorAllocator;
  /**
   * How the projections are made for `dtype`: q8 codes, or fp32 packed for
   * our kernel where it runs (undefined: plain weights); a string says why
   * `dtype` cannot run here.
   */
  readonly packer: (dtype: Dtype) => WeightPacker | undefined | string;
}

interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<AdapterLike | null>;
}

/**
 * Starts a backend for the page. `auto` takes WebGPU on a hardware adapter,
 * else wasm, else cpu; a software adapter (the browser's fallback) only when
 * `webgpu` is asked for by name. `wasmPaths` default to the copies this
 * package ships in its `wasm/tfjs/` folder, which bundlers such as Vite
 * copy beside the page.
 */
export interface PageBackendOptions {
  readonly wasmPaths?: WasmPaths;
  /** Threads of wasm's threaded build (a cross-origin isolated page). @default `navigator.hardwareConcurrency` */
  readonly threads?: number;
}

export async function startPageBackend(choice: PageBackendChoice, options: PageBackendOptions = {}): Promise<StartedBackend> {
  if (choice !== 'auto' && !PAGE_BACKENDS.includes(choice)) {
    throw new BackendError(String(choice), `unknown backend in a page; choose one of auto, ${PAGE_BACKENDS.join(', ')}`);
  }
  const order = choice === 'auto' ? PAGE_BACKENDS : [choice];
  const failures: string[] = [];
  for (const name of order) {
    try {
      return await START[name](choice === 'auto', options);
    } catch (error) {
      if (choice !== 'auto') throw error instanceof BackendError ? error : new BackendError(name, (error as Error).message);
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  throw new BackendError('auto', `no backend could start:\n  ${failures.join('\n  ')}`);
}

const START: Record<PageBackendName, (picking: boolean, options: PageBackendOptions) => Promise<StartedBackend>> = {
  webgpu: async (picking) => {
    const gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
    if (gpu === undefined) throw new BackendError('webgpu', 'this browser has no WebGPU (navigator.gpu), or the page is not a secure context');
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter === null) throw new BackendError('webgpu', 'the browser offers no WebGPU adapter (a blocklisted GPU or driver, or WebGPU turned off)');
    const report = describeAdapter(adapter);
    if (picking && report.software) {
      throw new BackendError('webgpu', `only a software adapter is here (${report.description}); ask for backend 'webgpu' to use it anyway`);
    }
    // Imported only when asked for, so that a page on wasm does not carry it.
    await import('@tensorflow/tfjs-backend-webgpu');
    await activate('webgpu');
    startWebGpu(tf.backend(), report);
    return { policy: POLICIES.webgpu, guard: guardWebGpuBatch, threads: 1, device: report, packer: (dtype) => refusalBeforeStart('webgpu', dtype) };
  },
  wasm: async (_picking, { wasmPaths, threads }) => {
    const path = wasmPath(wasmPaths);
    setWasmPaths(Object.fromEntries(TFJS_WASM_FILES.map((file) => [file, path(file)])));
    // tfjs takes half the cores (at most 4) by default; as in Node, all of them unless told.
    const wanted = threads ?? Math.max(1, navigatorOf().hardwareConcurrency ?? 1);
    setThreadsCount(wanted);
    await withReportedCores(2 * wanted, () => activate('wasm'));
    for (const failure of [installWasmSlice(version_wasm), installWasmGather(version_wasm), installWasmFusedKernels(version_wasm)]) {
      if (failure !== undefined) console.warn(failure);
    }
    const kernelFailure = await installPageKernels(path, getThreadsCount() - 1);
    if (kernelFailure !== undefined) console.warn(kernelFailure);
    return {
      policy: POLICIES.wasm,
      guard: yieldFirst,
      threads: getThreadsCount(),
      allocate: allocateInWasmHeap,
      // As Node's wasm backend loads: q8 codes, or fp32 packed for our kernel, which holds that copy only.
      packer: (dtype) => (wasmProductKernelsInstalled() ? wasmKernelPacker(dtype) : dtype === 'q8' ? kernelFailure : undefined),
    };
  },
  cpu: async () => {
    await activate('cpu');
    installCpuQ8();
    return { policy: POLICIES.cpu, guard: yieldFirst, threads: 1, packer: (dtype) => (dtype === 'q8' ? new QuantizingPacker(quantizedInJs) : undefined) };
  },
};

const NO_Q8_ON_GPU = 'webgpu has no q8 kernel; q8 runs on wasm and cpu';

/**
 * Why the backend asked for cannot run `dtype`, where that is known before it
 * starts (webgpu has no q8 kernel); undefined where only its start can tell.
 */
export function refusalBeforeStart(choice: PageBackendChoice, dtype: Dtype): string | undefined {
  return choice === 'webgpu' && dtype === 'q8' ? NO_Q8_ON_GPU : undefined;
}

/** Batches on the CPU run synchronously: each waits for a turn of the event loop first, so the page (or an abort) is not shut out for a whole call. */
const yieldFirst: BatchGuard = async (run) => {
  await yieldToEventLoop();
  return run();
};

function navigatorOf(): { hardwareConcurrency?: number } {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator ?? {};
}

/**
 * Runs `start` while the page's navigator reports `cores` logical cores. The
 * threaded build's C++ side caps its thread pool at half of them ("two
 * threads per core"), read once as the module starts, which would leave one
 * thread on a 2-core machine whatever `setThreadsCount` asks; Node's start
 * answers the same query the same way (backends/wasm-threads.ts). The
 * navigator's own value is back as soon as the module has started.
 */
async function withReportedCores<T>(cores: number, start: () => Promise<T>): Promise<T> {
  const navigator = (globalThis as { navigator?: object }).navigator;
  if (navigator === undefined) return start();
  Object.defineProperty(navigator, 'hardwareConcurrency', { value: cores, configurable: true });
  try {
    return await start();
  } finally {
    delete (navigator as { hardwareConcurrency?: number }).hardwareConcurrency;
  }
}

async function activate(name: PageBackendName): Promise<void> {
  let started: boolean;
  try {
    started = await tf.setBackend(name);
    await tf.ready();
  } catch (error) {
    throw new BackendError(name, `the backend failed to initialise: ${(error as Error).message}`);
  }
  if (!started) throw new BackendError(name, 'the backend failed to initialise');
}

/**
 * The package's own copies of tfjs-backend-wasm's files. Written as
 * `new URL('…', import.meta.url)` with literal paths, which bundlers (Vite,
 * webpack 5, esbuild with a loader) recognise and copy.
 */
function packagedWasmPaths(): Record<WasmFileName, string> {
  return {
    'tfjs-backend-wasm.wasm': new URL('../../wasm/tfjs/tfjs-backend-wasm.wasm', import.meta.url).href,
    'tfjs-backend-wasm-simd.wasm': new URL('../../wasm/tfjs/tfjs-backend-wasm-simd.wasm', import.meta.url).href,
    'tfjs-backend-wasm-threaded-simd.wasm': new URL('../../wasm/tfjs/tfjs-backend-wasm-threaded-simd.wasm', import.meta.url).href,
    'q8-kernels.wasm': new URL('../../wasm/q8-kernels.wasm', import.meta.url).href,
    'q8-kernels-shared.wasm': new URL('../../wasm/q8-kernels-shared.wasm', import.meta.url).href,
    'q8-kernels-relaxed.wasm': new URL('../../wasm/q8-kernels-relaxed.wasm', import.meta.url).href,
    'q8-kernels-relaxed-shared.wasm': new URL('../../wasm/q8-kernels-relaxed-shared.wasm', import.meta.url).href,
  };
}

const TFJS_WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'] as const;

/** Each file's URL under `wasmPaths`: the prefix's, the map's, else the package's copy. */
function wasmPath(wasmPaths: WasmPaths | undefined): (file: string) => string {
  const packaged = packagedWasmPaths();
  return (file) => {
    if (typeof wasmPaths === 'string') return `${wasmPaths}${file}`;
    return wasmPaths?.[file as WasmFileName] ?? packaged[file as WasmFileName];
  };
}
