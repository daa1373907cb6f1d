import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BackendError } from '../errors.js';
import { installWasmSlice } from './wasm-slice.js';

/**
 * - `tensorflow-gpu`: libtensorflow with CUDA, from `@tensorflow/tfjs-node-gpu`;
 * - `tensorflow`: libtensorflow on the CPU, from `@tensorflow/tfjs-node`;
 * - `wasm`: WebAssembly with SIMD, always installed;
 * - `cpu`: plain JavaScript, always installed, slow: a reference and a last resort.
 */
export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendChoice = BackendName | 'auto';

/** The order `auto` tries them in: fastest first. */
export const AUTO_ORDER: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** What provides each backend, and what to install when it is missing. */
const PACKAGES: Readonly<Record<BackendName, string | undefined>> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
  wasm: undefined,
  cpu: undefined,
};

/** The tfjs registry name of each backend: both libtensorflow packages register `tensorflow`. */
const TFJS_NAMES: Readonly<Record<BackendName, string>> = {
  'tensorflow-gpu': 'tensorflow',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

/** Tries to make one backend the active one; resolves to the reason it failed, or undefined. */
export type BackendActivator = (name: BackendName) => Promise<string | undefined>;

/**
 * Activates a backend process-wide (tfjs has one active backend per process)
 * and returns its name. `auto` takes the first of {@link AUTO_ORDER} that
 * works; an explicit choice that does not work is a {@link BackendError}.
 */
export async function selectBackend(
  choice: BackendChoice,
  activate: BackendActivator = activateBackend,
): Promise<BackendName> {
  if (choice !== 'auto') {
    if (!AUTO_ORDER.includes(choice)) {
      throw new BackendError(String(choice), `unknown backend; choose one of auto, ${AUTO_ORDER.join(', ')}`);
    }
    const failure = await activate(choice);
    if (failure !== undefined) throw new BackendError(choice, failure);
    return choice;
  }
  const failures: string[] = [];
  for (const name of AUTO_ORDER) {
    const failure = await activate(name);
    if (failure === undefined) return name;
    failures.push(`${name}: ${failure}`);
  }
  throw new BackendError('auto', `no backend could start:\n  ${failures.join('\n  ')}`);
}

async function activateBackend(name: BackendName): Promise<string | undefined> {
  // With tfjs-node-gpu loaded but no usable GPU, its libtensorflow still computes on the CPU.
  const pkg = name === 'tensorflow' && loaded.has(PACKAGES['tensorflow-gpu']!) ? undefined : PACKAGES[name];
  if (pkg !== undefined) {
    const failure = await importOptional(pkg);
    if (failure !== undefined) return failure;
  }
  try {
    if (!(await tf.setBackend(TFJS_NAMES[name]))) return 'the backend failed to initialise';
    await tf.ready();
    if (name === 'tensorflow-gpu') return gpuFailure(tf.backend());
    if (name === 'wasm') warnOnce(installWasmSlice());
    return undefined;
  } catch (error) {
    return `the backend failed to initialise: ${(error as Error).message}`;
  }
}

/**
 * tfjs-node-gpu loads even where TensorFlow finds no CUDA device, and then
 * quietly computes on the CPU; its backend's `isUsingGpuDevice` tells.
 */
export function gpuFailure(backend: unknown): string | undefined {
  if ((backend as { isUsingGpuDevice?: unknown } | null)?.isUsingGpuDevice === true) return undefined;
  return 'libtensorflow found no usable CUDA device (it needs an NVIDIA driver ≥ 450, CUDA 11.2 and cuDNN 8.1)';
}

/** Imports an optional package; the two libtensorflow packages must not both load. */
async function importOptional(pkg: string): Promise<string | undefined> {
  const other = Object.values(PACKAGES).find((p) => p !== undefined && p !== pkg && loaded.has(p));
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
    return `${pkg} is not usable: ${reason}; install it with \`npm install ${pkg}\`${gpuHint}`;
  }
}

const loaded = new Set<string>();

const warned = new Set<string>();
function warnOnce(message: string | undefined): void {
  if (message === undefined || warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, { code: 'NOMIC_EMBED_WASM_SLICE' });
}
