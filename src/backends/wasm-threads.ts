import * as tf from '@tensorflow/tfjs-core';
import { BackendWasm, getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { compileFunction } from 'node:vm';

/**
 * tfjs-backend-wasm's multi-threaded SIMD build, started in Node: one
 * WebAssembly heap (one copy of the weights) whose matrix products XNNPACK
 * splits over a pool of threads.
 *
 * tfjs starts it only in browsers: in Node its `WASM_HAS_MULTITHREAD_SUPPORT`
 * flag is false, and its start-up hands Emscripten's pthread workers Blob
 * URLs (the worker script, and the main script each worker imports), which
 * Node's worker_threads cannot load. Here the Emscripten factory is called
 * directly with files instead: the worker script tfjs ships as a string
 * (`wasmWorkerContents`) written once to a file named by its hash, and the
 * factory's own file as the main script (a worker evaluates it in its global
 * scope, where it defines `WasmBackendModuleThreadedSimd`).
 *
 * The thread count: the C++ side caps its thread pool at half the logical
 * cores ("two threads per core"), read once when the module's constructors run,
 * which leaves one thread on a 2-core machine. The module's import
 * `emscripten_num_logical_cores` is answered with twice the threads asked for,
 * for the main instance only, so the pool gets exactly those.
 *
 * The workers: Emscripten starts a fixed pool of 8 pthread workers before the
 * module runs, each loading the module (about 0.3 s of a 2-core machine's
 * start-up), and a thread can only run on a worker started in advance (the
 * main thread blocks until XNNPACK's threads are up). The factory is therefore
 * evaluated from its source with the pool sized to the threads asked for.
 */

const require = createRequire(import.meta.url);
const FACTORY = '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js';
const WORKER_SOURCE = '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js';
const BINARY = '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm';

type EmscriptenModule = {
  cwrap(name: string, returns: string | null, args: string[]): (...args: number[]) => unknown;
  PThread?: { runningWorkers: { unref(): void }[] };
  tfjs?: Record<string, unknown>;
};
type Imports = Record<string, Record<string, unknown>>;

/** The parts of the WebAssembly API used here (this package compiles without DOM types). */
const webAssembly = (globalThis as unknown as {
  WebAssembly: { instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: unknown; module: unknown }> };
}).WebAssembly;

/** Starting the module and its pthread workers takes about a second; past this, threads are taken to be unavailable. */
const START_TIMEOUT_MS = 30_000;
type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

/** Why threads could not start in this process, once a start failed. */
let failure: string | undefined;

export function threadsFailure(): string | undefined {
  return failure;
}

/** The threads of the active wasm backend (1 for the single-threaded build). */
export function wasmThreadCount(): number {
  try {
    return getThreadsCount();
  } catch {
    return 1;
  }
}

/**
 * Makes the next start of tfjs's `wasm` backend the threaded build with
 * `threads` threads. Returns false when the backend has already started
 * (its build and threads are then what they are) or threads are
 * unavailable here; a failed threaded start falls back to the
 * single-threaded build and says why in {@link threadsFailure}.
 */
export function useThreadedWasm(threads: number): boolean {
  if (tf.engine().registry.wasm !== undefined) return false;
  if (typeof SharedArrayBuffer === 'undefined') {
    failure = 'SharedArrayBuffer is not available in this JavaScript runtime';
    return false;
  }
  const plain = tf.findBackendFactory('wasm');
  if (plain === null) return false;
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      try {
        return await startThreaded(threads);
      } catch (error) {
        failure = `the threaded WebAssembly build did not start: ${(error as Error).message}`;
        return plain();
      }
    },
    2,
  );
  return true;
}

async function startThreaded(threads: number): Promise<tf.KernelBackend> {
  const factory = factoryWithPool(threads);
  const workerFile = pthreadWorkerFile();
  const binary = require.resolve(BINARY);
  let failInstantiation!: (error: Error) => void;
  const instantiationFailed = new Promise<never>((_, reject) => (failInstantiation = reject));
  const starting = factory({
    locateFile: (path: string, prefix: string) => (path.endsWith('.worker.js') ? workerFile : path.endsWith('.wasm') ? binary : prefix + path),
    mainScriptUrlOrBlob: require.resolve(FACTORY),
    instantiateWasm: (imports: Imports, receive: (instance: unknown, module: unknown) => void) => {
      const answered = Object.values(imports).filter((namespace) => 'emscripten_num_logical_cores' in namespace);
      for (const namespace of answered) namespace.emscripten_num_logical_cores = () => 2 * threads;
      webAssembly.instantiate(readFileSync(binary), imports).then(
        ({ instance, module: compiled }) => receive(instance, compiled),
        failInstantiation,
      );
      return {};
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const tooSlow = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`its threads did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
  });
  const module = await Promise.race([starting, instantiationFailed, tooSlow]).finally(() => clearTimeout(timer));
  // The same JavaScript bridge tfjs-backend-wasm's own start-up builds.
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  setThreadsCount(threads);
  const backend = new BackendWasm(module as never) as unknown as tf.KernelBackend;
  // XNNPACK's pool threads wait for work forever; like the idle workers Emscripten unrefs, they must not keep Node alive.
  for (const worker of module.PThread?.runningWorkers ?? []) worker.unref();
  return backend;
}

/** The number Emscripten's generated start-up gives its pthread pool, as tfjs-backend-wasm 4.22 builds it. */
const POOL_SIZE_STATEMENT = 'var pthreadPoolSize=8;';

/**
 * The Emscripten factory with a pool of `threads` pthread workers (XNNPACK
 * runs `threads - 1` of them beside the calling thread). A build whose
 * start-up reads differently is used as it is.
 */
function factoryWithPool(threads: number): Factory {
  const path = require.resolve(FACTORY);
  const source = readFileSync(path, 'utf8');
  if (!source.includes(POOL_SIZE_STATEMENT)) return require(FACTORY) as Factory;
  const patched = source.replace(POOL_SIZE_STATEMENT, `var pthreadPoolSize=${Math.max(1, threads)};`);
  // Evaluated as Node evaluates a CommonJS file, under the file's own name (error stacks point at it).
  const run = compileFunction(patched, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: path });
  const module = { exports: {} as unknown };
  run(module.exports, createRequire(path), module, path, dirname(path));
  return module.exports as Factory;
}

/** The pthread worker script as a file, written once per content (Node loads workers from files, not Blob URLs). */
function pthreadWorkerFile(): string {
  const { wasmWorkerContents } = require(WORKER_SOURCE) as { wasmWorkerContents: string };
  // As tfjs does for its Blob: newlines inside the script's string literals must stay escaped.
  const source = wasmWorkerContents.replace(/\n/g, '\\n');
  const dir = join(tmpdir(), 'nomic-embed-tfjs');
  const file = join(dir, `pthread-worker-${createHash('sha256').update(source).digest('hex').slice(0, 16)}.cjs`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, source);
    renameSync(partial, file);
  }
  return file;
}
