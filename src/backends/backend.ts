import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel, loadModelConcurrently, type LoadModelOptions } from '../model/load-model.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import { DTYPES, type Dtype } from '../model/projection.js';
import { installCpuQ8 } from './q8/cpu-q8.js';
import { quantizedInJs, QuantizingPacker } from './q8/q8-packer.js';
import { q8KernelModule, q8RelaxedKernelModule } from './q8/kernel-file.js';
import { spawnNodeHelpers } from './q8/node-helpers.js';
import { describeQ8Product, installWasmQ8, parseQ8Simd, wasmKernelPacker, wasmProductKernelsInstalled } from './q8/wasm-q8.js';
import { POLICIES, type BackendPolicy } from './policy.js';
import type { BackendName, BackendSettings } from './select.js';
import { allocateInWasmHeap, reserveWasmHeap, wasmHeapSlots } from './wasm-heap.js';
import { installWasmFusedKernels } from './wasm-fused.js';
import { installWasmGather } from './wasm-gather.js';
import { installWasmSlice } from './wasm-slice.js';
import { threadsFailure, useThreadedWasm, wasmThreadCount } from './wasm-threads.js';
import { describeAdapter, findAdapter, type GpuAdapterReport } from './webgpu/adapter.js';
import { mayHaveGpu } from './webgpu/gpu-devices.js';
import { guardWebGpuBatch, startWebGpu, webGpuAdapter } from './webgpu/device.js';
import { xnnpackPacker } from './xnnpack-packer.js';

/** Wraps each batch with what its backend needs around it (WebGPU's error scopes). */
export type BatchGuard = <T>(run: () => Promise<T>) => Promise<T>;

/**
 * What differs from one backend to another, in one place: the embedder, its
 * worker threads and the command line ask the active backend's object, and
 * never compare its name. Each object speaks for its backend once
 * `selectBackend` has started it.
 */
export interface Backend extends BackendPolicy {
  /** The tfjs registry name it runs under: both libtensorflow packages register `tensorflow`. */
  readonly tfjsName: string;
  /** The optional package that provides it, and what to install when it is missing; none when built in. */
  readonly package?: string;
  /**
   * Before tfjs starts it: finds what it would run on (WebGPU's adapter) or
   * chooses its build (wasm's threads). Resolves to why it cannot start, or
   * undefined. `picking` is true when `auto` chooses, which takes a GPU
   * backend only on a real GPU.
   */
  prepare(picking: boolean, settings: BackendSettings): Promise<string | undefined>;
  /** Once tfjs runs it: checks it (libtensorflow's GPU), mends or adds kernels. Returns why it cannot serve, or undefined. */
  started(): string | undefined;
  /** Runs one batch: inside WebGPU's error scopes, so that its failures become exceptions; elsewhere as it is. */
  readonly guard: BatchGuard;
  /** Threads each matrix product uses. */
  threads(): number;
  /** Whether one instance computes on one core, so that worker threads are how it uses the others. */
  needsWorkersForCores(): boolean;
  /** Makes room for a model and a batch before loading, where memory grows slowly piece by piece. */
  reserve(bytes: number): void;
  /** The weight precisions it runs (`dtype`): fp32 everywhere, q8 where it has the kernel; with why not, if q8 is missing. */
  dtypes(): { readonly supported: readonly Dtype[]; readonly q8Failure?: string };
  /** Loads a model folder onto it in `options.dtype` (one of `dtypes()`), the fastest way it allows. */
  loadModel(dir: string, options: LoadModelOptions): Promise<NomicBertModel>;
  /** The device it runs on, where there is one to describe: WebGPU's adapter. */
  device(): GpuAdapterReport | undefined;
  /** What `nomic-embed info` says of it beyond its name, with sizes written by `bytes`. */
  describe(bytes: (count: number) => string): string[];
}

/** The two libtensorflow packages: they register the same backend, so only one may load in a process. */
export const TFJS_NODE = '@tensorflow/tfjs-node';
export const TFJS_NODE_GPU = '@tensorflow/tfjs-node-gpu';

/** libtensorflow and plain JavaScript: everything in this thread. */
const BASE: Omit<Backend, keyof BackendPolicy | 'tfjsName'> = {
  prepare: async () => undefined,
  started: () => undefined,
  guard: (run) => run(),
  threads: () => 1,
  needsWorkersForCores: () => false,
  reserve: () => undefined,
  dtypes: () => ({ supported: ['fp32'], q8Failure: 'this backend has no q8 kernel; q8 runs on wasm and cpu' }),
  loadModel: async (dir, options) => loadModel(dir, options),
  device: () => undefined,
  describe: () => [],
};

const WASM: Backend = {
  ...BASE,
  ...POLICIES.wasm,
  tfjsName: 'wasm',
  // tfjs has one wasm backend per process: the first start decides its build and threads.
  prepare: async (_picking, settings) => {
    if ((settings.wasmThreads ?? 1) > 1) useThreadedWasm(settings.wasmThreads!);
    return undefined;
  },
  started: () => {
    warnOnce(installWasmSlice());
    warnOnce(installWasmGather(version_wasm));
    warnOnce(installWasmFusedKernels(version_wasm));
    wasmQ8Failure = installWasmQ8(version_wasm, {
      module: q8KernelModule,
      relaxedModule: q8RelaxedKernelModule,
      helpers: (module, relaxed, memory) => (wasmThreadCount() > 1 ? spawnNodeHelpers(module, relaxed, memory, wasmThreadCount() - 1) : undefined),
      simd: parseQ8Simd(process.env.NOMIC_EMBED_Q8_SIMD, 'NOMIC_EMBED_Q8_SIMD'),
    });
    return undefined;
  },
  dtypes: () => (wasmQ8Failure === undefined ? { supported: DTYPES } : { supported: ['fp32'], q8Failure: wasmQ8Failure }),
  threads: () => wasmThreadCount(),
  needsWorkersForCores: () => wasmThreadCount() === 1,
  reserve: (bytes) => reserveWasmHeap(bytes),
  /**
   * Threaded: the weights read straight into the shared heap on Node's I/O
   * threads while this thread makes the projections already read into our
   * kernels' forms (packed float32, or q8 codes), keeping only those; into
   * XNNPACK's packed copy where our kernels cannot be installed (see
   * `xnnpackPacker`). Single threaded: the same, one tensor after another.
   */
  loadModel: async (dir, options) => {
    const packer = () => (options.dtype === 'q8' || wasmProductKernelsInstalled() ? wasmKernelPacker(options.dtype ?? 'fp32') : xnnpackPacker());
    const slots = wasmHeapSlots();
    if (slots !== undefined) return loadModelConcurrently(dir, options, slots, packer());
    return loadModel(dir, options, allocateInWasmHeap, packer());
  },
  describe: () => [
    ...(wasmProductKernelsInstalled() ? [describeQ8Product()] : []),
    wasmThreadCount() > 1
      ? `wasm: threaded build, ${wasmThreadCount()} threads (one model, every matrix product on all of them)`
      : `wasm: single-threaded build${threadsFailure() === undefined ? '' : ` (${threadsFailure()})`}; embed and serve use one worker thread per core instead`,
  ],
};

/** Why the wasm backend's q8 kernel could not be registered, once it has started. */
let wasmQ8Failure: string | undefined = 'the wasm backend has not started';

/** The adapter the webgpu backend was prepared on, for `started`. */
let preparedAdapter: GpuAdapterReport | undefined;

const WEBGPU: Backend = {
  ...BASE,
  ...POLICIES.webgpu,
  tfjsName: 'webgpu',
  package: '@tensorflow/tfjs-backend-webgpu',
  // The adapter first: tfjs-backend-webgpu registers itself only where navigator.gpu exists.
  prepare: async (picking) => {
    const found = await usableAdapter(picking);
    if ('failure' in found) return found.failure;
    preparedAdapter = found.report;
    return undefined;
  },
  started: () => {
    startWebGpu(tf.backend(), preparedAdapter!);
    return undefined;
  },
  guard: guardWebGpuBatch,
  device: () => webGpuAdapter(),
  describe: (bytes) => {
    const adapter = webGpuAdapter();
    if (adapter === undefined) return [];
    return [
      `adapter: ${adapter.vendor}, ${adapter.architecture}, ${adapter.description} (${adapter.software ? 'software' : 'hardware'})`,
      `adapter limits: maxBufferSize ${bytes(adapter.maxBufferSize)}, maxStorageBufferBindingSize ${bytes(adapter.maxStorageBufferBindingSize)}`,
    ];
  },
};

const BACKENDS: Readonly<Record<BackendName, Backend>> = {
  'tensorflow-gpu': { ...BASE, ...POLICIES['tensorflow-gpu'], tfjsName: 'tensorflow', package: TFJS_NODE_GPU, started: () => gpuFailure(tf.backend()) },
  webgpu: WEBGPU,
  tensorflow: { ...BASE, ...POLICIES.tensorflow, tfjsName: 'tensorflow', package: TFJS_NODE },
  wasm: WASM,
  cpu: {
    ...BASE,
    ...POLICIES.cpu,
    tfjsName: 'cpu',
    started: () => {
      installCpuQ8();
      return undefined;
    },
    dtypes: () => ({ supported: DTYPES }),
    loadModel: async (dir, options) => loadModel(dir, options, undefined, options.dtype === 'q8' ? new QuantizingPacker(quantizedInJs) : undefined),
  },
};

/** The adapter WebGPU would run on, or why it cannot serve: no adapter, or (when `auto` picks) only a software one. */
async function usableAdapter(picking: boolean): Promise<{ report: GpuAdapterReport } | { failure: string }> {
  if (picking && !mayHaveGpu()) return { failure: 'this machine shows no GPU (no /dev/dri/renderD*, /dev/nvidia*, /dev/dxg)' };
  const found = await findAdapter();
  if ('failure' in found) return found;
  const report = describeAdapter(found.adapter);
  if (picking && report.software) {
    return { failure: `only a software adapter is here (${report.description}); ask for backend 'webgpu' to use it anyway` };
  }
  return { report };
}

/**
 * tfjs-node-gpu loads even where TensorFlow finds no CUDA device, and then
 * quietly computes on the CPU; its backend's `isUsingGpuDevice` tells.
 */
export function gpuFailure(backend: unknown): string | undefined {
  if ((backend as { isUsingGpuDevice?: unknown } | null)?.isUsingGpuDevice === true) return undefined;
  return 'libtensorflow found no usable CUDA device (it needs an NVIDIA driver ≥ 450, CUDA 11.2 and cuDNN 8.1)';
}

const warned = new Set<string>();
function warnOnce(message: string | undefined): void {
  if (message === undefined || warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, { code: 'NOMIC_EMBED_WASM_SLICE' });
}

/** The object that speaks for a backend. */
export function backendNamed(name: BackendName): Backend {
  return BACKENDS[name];
}
