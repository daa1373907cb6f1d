import type { BatchGuard } from '../backends/backend.js';
import { DisposedError } from '../errors.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import { runBatchJob, type BatchJob, type BatchOutput } from '../pipeline/batch-job.js';
import type { BatchRunner } from './runner.js';

/**
 * Runs batches on a model in this thread: one at a time, or with
 * `inFlight` > 1 (on a GPU) the next one encoded while the device runs the
 * last. A batch's forward pass is synchronous, so batches in flight only
 * interleave at their read-backs.
 */
export class LocalRunner implements BatchRunner {
  readonly concurrency = 1;
  private disposed = false;

  constructor(
    readonly model: NomicBertModel,
    private readonly guard: BatchGuard = (run) => run(),
    readonly threads = 1,
    readonly inFlight = 1,
  ) {}

  run(job: BatchJob): Promise<BatchOutput> {
    if (this.disposed) return Promise.reject(new DisposedError());
    return this.guard(() => runBatchJob(this.model, job));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.model.dispose();
  }
}
