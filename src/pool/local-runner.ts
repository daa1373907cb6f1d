import type { BatchGuard } from '../backends/select.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import { runBatchJob, type BatchJob, type BatchOutput } from '../pipeline/batch-job.js';
import type { BatchRunner } from './runner.js';

/** Runs batches one at a time on a model in this thread. */
export class LocalRunner implements BatchRunner {
  readonly concurrency = 1;

  constructor(
    readonly model: NomicBertModel,
    private readonly guard: BatchGuard = (run) => run(),
    readonly threads = 1,
  ) {}

  run(job: BatchJob): Promise<BatchOutput> {
    return this.guard(() => runBatchJob(this.model, job));
  }

  async dispose(): Promise<void> {
    this.model.dispose();
  }
}
