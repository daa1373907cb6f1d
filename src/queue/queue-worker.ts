import type { Job, Worker } from 'bullmq';
import type { Embedder } from '../embedder.js';
import { checkVersion, encodeResult, JobFormatError, type ChunkJob, type ChunkResult } from './job-format.js';
import { connectRedis } from './connection.js';

export interface QueueWorkerOptions {
  /** `redis://[user:password@]host:port[/db]` */
  readonly redis: string;
  /** @default 'nomic-embed' */
  readonly queue?: string;
  /** Jobs this process runs at once. @default 1 */
  readonly concurrency?: number;
  /**
   * How long a job stays locked without a renewal: a worker that dies
   * (SIGKILL) leaves its job to others after this. It must exceed the
   * longest batch, during which the event loop cannot renew it. @default 30000
   */
  readonly lockMs?: number;
}

export const DEFAULT_QUEUE = 'nomic-embed';

/**
 * Takes chunk jobs from the queue and embeds them with `embedder`; run any
 * number, on any number of machines. A job whose format version is not this
 * one fails at once, without retries. Resolves to the BullMQ worker; `close()`
 * stops taking jobs and waits for the ones running.
 */
export async function startQueueWorker(embedder: Embedder, options: QueueWorkerOptions): Promise<Worker<ChunkJob, ChunkResult>> {
  // Loaded on first use, not where the package is imported (see `serve`).
  const { UnrecoverableError, Worker: BullWorker } = await import('bullmq');
  const connection = await connectRedis(options.redis);
  const lockMs = options.lockMs ?? 30_000;
  const worker = new BullWorker<ChunkJob, ChunkResult>(
    options.queue ?? DEFAULT_QUEUE,
    async (job: Job<ChunkJob>) => {
      try {
        checkVersion(job.data);
      } catch (error) {
        throw new UnrecoverableError((error as JobFormatError).message);
      }
      const { texts, options: embedOptions } = job.data;
      const { embeddings } = await embedder.embed(texts, embedOptions);
      return encodeResult(embeddings);
    },
    {
      connection,
      concurrency: options.concurrency ?? 1,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A job whose worker died twice in a row is given up as failed, not retried forever.
      maxStalledCount: 2,
    },
  );
  worker.on('error', () => undefined);
  await worker.waitUntilReady();
  return worker;
}
