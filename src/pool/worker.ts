import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend, type BackendName } from '../backends/select.js';
import { loadModel, type LoadModelOptions } from '../model/load-model.js';
import { runBatchJob, type BatchJob } from '../pipeline/batch-job.js';

/** What the pool hands each worker at start. */
export interface WorkerSetup {
  readonly dir: string;
  readonly backend: BackendName;
  readonly modelOptions: LoadModelOptions;
}

export type WorkerRequest = { readonly id: number; readonly job: BatchJob };
export type WorkerReply =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly id: number; readonly vectors: Float32Array; readonly measuredPeakBytes: number }
  | { readonly type: 'error'; readonly id: number | undefined; readonly name: string; readonly message: string };

const port = parentPort!;
const setup = workerData as WorkerSetup;

try {
  await selectBackend(setup.backend);
  const model = loadModel(setup.dir, setup.modelOptions);
  port.on('message', async ({ id, job }: WorkerRequest) => {
    try {
      const { vectors, measuredPeakBytes } = await runBatchJob(model, job);
      port.postMessage({ type: 'result', id, vectors, measuredPeakBytes } satisfies WorkerReply, [vectors.buffer as ArrayBuffer]);
    } catch (error) {
      port.postMessage(errorReply(id, error));
    }
  });
  port.postMessage({ type: 'ready' } satisfies WorkerReply);
} catch (error) {
  port.postMessage(errorReply(undefined, error));
}

function errorReply(id: number | undefined, error: unknown): WorkerReply {
  const e = error instanceof Error ? error : new Error(String(error));
  return { type: 'error', id, name: e.name, message: e.message };
}
