import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BackendError } from '../errors.js';
import { installWasmSlice } from './wasm-slice.js';
import { useThreadedWasm } from './wasm-threads.js';
import { describeAdapter, findAdapter, mayHaveGpu, type GpuAdapterReport } from './webgpu/adapter.js';
import { guardWebGpuBatch, startWebGpu } from './webgpu/device.js';

/**
 * - `tensorflow-gpu`: libtensorflow with CUDA, from `@tensorflow/tfjs-node-gpu`;
 * - `webgpu`: WebGPU, from `@tensorflow/tfjs-backend-webgpu`; in Node on Dawn
 *   (npm `webgpu`) over Vulkan, Metal or D3D12;
 * - `tensorflow`: libtensorflow on the CPU, from `@tensorflow/tfjs-node`;
 * - `wasm`: WebAssembly with SIMD, always installed;
 * - `cpu`: plain JavaScript, always installed, slow: a reference and a last resort.
 */
export type BackendName = 'tensorflow-gpu' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendChoice = BackendName | 'auto';

/** The order `auto` tries them in: fastest first. `auto` takes `webgpu` only on a real GPU. */
export const AUTO_ORDER: readonly BackendName[] = ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

/** What provides each backend, and what to install when it is missing. */
const PACKAGES: Readonly<Record<BackendName, string | undefined>> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
  tensorflow: '@tensorflow/tfjs-node',
  wasm: undefined,
  cpu: undefined,
};

/** The tfjs registry name of each backend: both libtensorflow packages register `tensorflow`. */
const TFJS_NAMES: Readonly<Record<BackendName, string>> = {
  'tensorflow-gpu': 'tensorflow',
  webgpu: 'webgpu',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

/**
 * Tries to make one backend the active one; resolves to the reason it failed,
 * or undefined. `picking` is true when `auto` is choosing, which takes a GPU
 * backend only on a real GPU.
 */
export type BackendActivator = (name: BackendName, picking: boolean, settings: BackendSettings) => Promise<string | undefined>;

export interface BackendSettings {
  /**
   * Threads of the wasm backend (tfjs-backend-wasm's threaded build) when it
   * starts in this process; 1 for the single-threaded build. @default 1
   */
  readonly wasmThreads?: number;
}

/**
 * Activates a backend process-wide (tfjs has one active backend per process)
 * and returns its name. `auto` takes the first of {@link AUTO_ORDER} that
 * works; an explicit choice that does not work is a {@link BackendError}.
 */
export async function selectBackend(
  choice: BackendChoice,
  activate: BackendActivator = activateBackend,
  settings: BackendSettings = {},
): Promise<BackendName> {
  if (choice !== 'auto') {
    if (!AUTO_ORDER.includes(choice)) {
      throw new BackendError(String(choice), `unknown backend; choose one of auto, ${AUTO_ORDER.join(', ')}`);
    }
    const failure = await activate(choice, false, settings);
    if (failure !== undefined) throw new BackendError(choice, failure);
    return choice;
  }
  const failures: string[] = [];
  for (const name of AUTO_ORDER) {
    const failure = await activate(name, true, settings);
    if (failure === undefined) return name;
    failures.push(`${name}: ${failure}`);
  }
  throw new BackendError('auto', `no backend could start:\n  ${failures.join('\n  ')}`);
}

async function activateBackend(name: BackendName, picking: boolean, settings: BackendSettings): Promise<string | undefined> {
  let adapter: GpuAdapterReport | undefined;
  if (name === 'webgpu') {
    // The adapter first: tfjs-backend-webgpu registers itself only where navigator.gpu exists.
    const found = await usableAdapter(picking);
    if ('failure' in found) return found.failure;
    adapter = found.report;
  }
  // With tfjs-node-gpu loaded but no usable GPU, its libtensorflow still computes on the CPU.
  const pkg = name === 'tensorflow' && loaded.has(PACKAGES['tensorflow-gpu']!) ? undefined : PACKAGES[name];
  if (pkg !== undefined) {
    const failure = await importOptional(pkg);
    if (failure !== undefined) return failure;
  }
  // tfjs has one wasm backend per process: the first start decides its build and threads.
  if (name === 'wasm' && (settings.wasmThreads ?? 1) > 1) useThreadedWasm(settings.wasmThreads!);
  try {
    if (!(await tf.setBackend(TFJS_NAMES[name]))) return 'the backend failed to initialise';
    await tf.ready();
    if (name === 'tensorflow-gpu') return gpuFailure(tf.backend());
    if (name === 'wasm') warnOnce(installWasmSlice());
    if (name === 'webgpu') startWebGpu(tf.backend(), adapter!);
    return undefined;
  } catch (error) {
    return `the backend failed to initialise: ${(error as Error).message}`;
  }
}

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

/** Imports an optional peer package; the two libtensorflow packages must not both load. */
async function importOptional(pkg: string): Promise<string | undefined> {
  const libtensorflow = [PACKAGES.tensorflow, PACKAGES['tensorflow-gpu']];
  const other = libtensorflow.includes(pkg) ? libtensorflow.find((p) => p !== pkg && loaded.has(p!)) : undefined;
  if (other !== undefined) return `${other} is already loaded in this process and registers the same backend`;
  try {
    // A variable specifier keeps TypeScript from requiring the optional package's types.
    const specifier: string = pkg;
    await import(specifier);
    loaded.add(pkg);
    return undefined;
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    const gpuHint = pkg.endsWith('-gpu') ? ' (it needs CUDA 11.2 and cuDNN 8.1 on Linux x64)' : '';
    const install = pkg === PACKAGES.webgpu ? `${pkg} webgpu` : pkg;
    return `${pkg} is not usable: ${reason}; install it with \`npm install ${install}\`${gpuHint}`;
  }
}

const loaded = new Set<string>();

const warned = new Set<string>();
function warnOnce(message: string | undefined): void {
  if (message === undefined || warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, { code: 'NOMIC_EMBED_WASM_SLICE' });
}

/** Wraps each batch with what its backend needs around it (WebGPU's error scopes). */
export type BatchGuard = <T>(run: () => Promise<T>) => Promise<T>;

/**
 * Batches to keep in flight on one model in this thread. On a GPU, two: the
 * host tokenizes, encodes and reads back one while the device runs the
 * other. Memory does not grow: tfjs frees a batch's intermediates once its
 * forward pass is encoded, the next batch reuses those buffers, and the GPU
 * runs submissions in order.
 */
export function batchesInFlight(name: BackendName): number {
  return name === 'webgpu' ? 2 : 1;
}

export function batchGuard(name: BackendName): BatchGuard {
  return name === 'webgpu' ? guardWebGpuBatch : (run) => run();
}

