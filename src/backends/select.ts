import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BackendError } from '../errors.js';
import { backendNamed, TFJS_NODE, TFJS_NODE_GPU } from './backend.js';

export { gpuFailure } from './backend.js';

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

/** Starts a backend by its object's steps: prepare, import its package, let tfjs start it, then `started`. */
async function activateBackend(name: BackendName, picking: boolean, settings: BackendSettings): Promise<string | undefined> {
  const backend = backendNamed(name);
  const prepared = await backend.prepare(picking, settings);
  if (prepared !== undefined) return prepared;
  // With tfjs-node-gpu loaded but no usable GPU, its libtensorflow still computes on the CPU: nothing more to load.
  const pkg = backend.package === TFJS_NODE && loaded.has(TFJS_NODE_GPU) ? undefined : backend.package;
  if (pkg !== undefined) {
    const failure = await importOptional(pkg);
    if (failure !== undefined) return failure;
  }
  try {
    if (!(await tf.setBackend(backend.tfjsName))) return 'the backend failed to initialise';
    await tf.ready();
    return backend.started();
  } catch (error) {
    return `the backend failed to initialise: ${(error as Error).message}`;
  }
}

/** Imports an optional peer package; the two libtensorflow packages must not both load. */
async function importOptional(pkg: string): Promise<string | undefined> {
  const libtensorflow = [TFJS_NODE, TFJS_NODE_GPU];
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
    // tfjs-backend-webgpu needs Dawn's Node bindings beside it.
    const install = pkg === backendNamed('webgpu').package ? `${pkg} webgpu` : pkg;
    return `${pkg} is not usable: ${reason}; install it with \`npm install ${install}\`${gpuHint}`;
  }
}

const loaded = new Set<string>();
