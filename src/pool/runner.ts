import type { BatchJob, BatchOutput } from '../pipeline/batch-job.js';

/** Where batches run: in this thread, or spread over worker threads. */
export interface BatchRunner {
  /** Batches that may run at once: one per worker. Plans give each worker work. */
  readonly concurrency: number;
  /**
   * Batches to keep in flight: `concurrency`, or more where a batch's host
   * work can overlap another's device work (a GPU).
   */
  readonly inFlight: number;
  /** Threads each batch's matrix products use (the wasm backend's threaded build), 1 otherwise. */
  readonly threads: number;
  run(job: BatchJob): Promise<BatchOutput>;
  /** Frees models and ends workers; safe to call twice. */
  dispose(): Promise<void>;
}
