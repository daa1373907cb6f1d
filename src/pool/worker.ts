import { parentPort, workerData } from 'node:worker_threads';
import { backendNamed } from '../backends/backend.js';
import { selectBackend, type BackendName } from '../backends/select.js';
import type { LoadModelOptions } from '../model/load-model.js';
import { runBatchJob, warmUpJob, type BatchJob } from '../pipeline/batch-job.js';
import { serializeError, type SerializedError } from './error-transfer.js';

/** What the pool hands each worker at start. */
export interface WorkerSetup {
  readonly dir: string;
  readonly backend: BackendName;
  readonly modelOptions: LoadModelOptions;
  /** Threads of each worker's wasm backend. @default 1 */
  readonly wasmThreads?: number;
  /** Heap to reserve before loading (the wasm backend grows its heap slowly piece by piece). */
  readonly reserveBytes?: number;
  /**
   * A module the worker imports before anything else, for fault injection in
   * tests: it may export `onStart()` (throw to fail the start) and
   * `wrapRun(run)` (returns the batch function to use).
   */
  readonly hooks?: string;
}

export interface WorkerHooks {
  onStart?(): void | Promise<void>;
  wrapRun?(run: typeof runBatchJob): typeof runBatchJob;
}

export type WorkerRequest = { readonly id: number; readonly job: BatchJob };
export type WorkerReply =
  | { readonly type: 'ready'; readonly threads: number }
  | { readonly type: 'result'; readonly id: number; readonly vectors: Float32Array; readonly measuredPeakBytes: number }
  | { readonly type: 'error'; readonly id: number | undefined; readonly error: SerializedError };

const port = parentPort!;
const setup = workerData as WorkerSetup;

try {
  const hooks: WorkerHooks = setup.hooks === undefined ? {} : await import(setup.hooks);
  await hooks.onStart?.();
  // The same start as in the main thread, through the same backend object.
  const backend = backendNamed(await selectBackend(setup.backend, undefined, { wasmThreads: setup.wasmThreads }));
  if (setup.reserveBytes !== undefined) backend.reserve(setup.reserveBytes);
  const model = await backend.loadModel(setup.dir, setup.modelOptions);
  const run = hooks.wrapRun?.(runBatchJob) ?? runBatchJob;
  const { guard } = backend;
  await guard(() => runBatchJob(model, warmUpJob(backend.attention())));
  port.on('message', async ({ id, job }: WorkerRequest) => {
    try {
      const { vectors, measuredPeakBytes } = await guard(() => run(model, job));
      port.postMessage({ type: 'result', id, vectors, measuredPeakBytes } satisfies WorkerReply, [vectors.buffer as ArrayBuffer]);
    } catch (error) {
      port.postMessage({ type: 'error', id, error: serializeError(error) } satisfies WorkerReply);
    }
  });
  port.postMessage({ type: 'ready', threads: backend.threads() } satisfies WorkerReply);
} catch (error) {
  port.postMessage({ type: 'error', id: undefined, error: serializeError(error) } satisfies WorkerReply);
}
