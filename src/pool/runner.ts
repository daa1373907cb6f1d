import type { BatchJob, BatchOutput } from '../pipeline/batch-job.js';

/** Where batches run: in this thread, or spread over worker threads. */
export interface BatchRunner {
  /** Batches that may run at once. */
  readonly concurrency: number;
  /** Threads each batch's matrix products use (the wasm backend's threaded build), 1 otherwise. */
  readonly threads: number;
  run(job: BatchJob): Promise<BatchOutput>;
  /** Frees models and ends workers; safe to call twice. */
  dispose(): Promise<void>;
}
