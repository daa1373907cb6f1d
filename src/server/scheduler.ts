import type { Embedder } from '../embedder.js';
import { NomicEmbedError, OutOfMemoryError } from '../errors.js';
import type { BatchLimits } from '../scheduling/batcher.js';

/** The queue holds more tokens than allowed: try again later (HTTP 429). */
export class QueueFullError extends NomicEmbedError {
  override name = 'QueueFullError';
  constructor(
    readonly queuedTokens: number,
    readonly maxQueueTokens: number,
  ) {
    super(`the queue holds ${queuedTokens} of at most ${maxQueueTokens} tokens; try again shortly`);
  }
}

/** One request alone is larger than the whole queue (HTTP 413). */
export class RequestTooLargeError extends NomicEmbedError {
  override name = 'RequestTooLargeError';
  constructor(
    readonly tokens: number,
    readonly maxQueueTokens: number,
  ) {
    super(`the request holds ${tokens} tokens, more than the server queues at once (${maxQueueTokens}); split it`);
  }
}

/** The request was withdrawn (its client went away) before all its texts ran. */
export class CancelledError extends NomicEmbedError {
  override name = 'CancelledError';
  constructor() {
    super('the request was cancelled');
  }
}

export interface SchedulerOptions {
  readonly limits: BatchLimits;
  /** Most tokens waiting at once, over all requests. */
  readonly maxQueueTokens: number;
  /** How long an idle server waits for company before running a batch smaller than its budget. */
  readonly batchWaitMs: number;
  /** Told of every forward batch that ran: texts in it, real and padded tokens. */
  readonly onBatch?: (texts: number, tokens: number, paddedTokens: number) => void;
  /** Told whenever the queue changes. */
  readonly onQueue?: (texts: number, tokens: number) => void;
}

interface PendingText {
  readonly request: PendingRequest;
  readonly index: number;
  readonly ids: Int32Array;
}

interface PendingRequest {
  /** Texts not yet taken into a batch, in order. */
  readonly waiting: PendingText[];
  readonly vectors: Float32Array[];
  remaining: number;
  settled: boolean;
  readonly resolve: (vectors: Float32Array[]) => void;
  readonly reject: (error: unknown) => void;
}

/** Batches in view at once when picking the next one: a window of texts taken fairly from every request. */
const WINDOW_BATCHES = 4;

/**
 * Runs the texts of concurrent requests through one embedder in shared
 * forward passes. Every request's texts wait in its own queue; each batch is
 * picked from a window that takes texts from the requests in turn (so a
 * large request cannot starve small ones), sorted by length so that texts of
 * similar length share a batch (little padding), and filled up to the token
 * budget. The forward pass returns pooled vectors; each request finishes its
 * own (normalisation, Matryoshka size), so requests that differ only in those
 * share batches. An idle scheduler waits `batchWaitMs` for company when the
 * queue holds less than a batch.
 */
export class EmbeddingScheduler {
  private readonly requests: PendingRequest[] = [];
  private queuedTexts = 0;
  private queuedTokens = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly embedder: Embedder,
    private readonly options: SchedulerOptions,
  ) {
  }

  /** Texts and tokens waiting, not counting those in batches that run. */
  get queue(): { texts: number; tokens: number } {
    return { texts: this.queuedTexts, tokens: this.queuedTokens };
  }

  /**
   * Queues one request's token id sequences; resolves to their mean-pooled
   * vectors in order. Throws {@link QueueFullError} or {@link RequestTooLargeError}
   * at once when it cannot be queued; an aborted `signal` drops the texts that
   * have not run yet and rejects with {@link CancelledError}.
   */
  submit(sequences: readonly Int32Array[], signal?: AbortSignal): Promise<Float32Array[]> {
    const tokens = sequences.reduce((sum, ids) => sum + ids.length, 0);
    const { maxQueueTokens } = this.options;
    if (tokens > maxQueueTokens) throw new RequestTooLargeError(tokens, maxQueueTokens);
    if (this.queuedTokens + tokens > maxQueueTokens) throw new QueueFullError(this.queuedTokens, maxQueueTokens);
    if (sequences.length === 0) return Promise.resolve([]);
    return new Promise<Float32Array[]>((resolve, reject) => {
      const request: PendingRequest = { waiting: [], vectors: new Array(sequences.length), remaining: sequences.length, settled: false, resolve, reject };
      sequences.forEach((ids, index) => request.waiting.push({ request, index, ids }));
      this.requests.push(request);
      this.changeQueue(sequences.length, tokens);
      signal?.addEventListener('abort', () => this.cancel(request), { once: true });
      this.schedule();
    });
  }

  /** Resolves once nothing waits and nothing runs. */
  idle(): Promise<void> {
    if (this.requests.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Fails every request still waiting (a server shutting down past its grace period). */
  failAll(error: Error): void {
    for (const request of [...this.requests]) this.settle(request, error);
  }

  private cancel(request: PendingRequest): void {
    if (request.settled) return;
    this.settle(request, new CancelledError());
  }

  /** Settles a request and drops its waiting texts from the queue. */
  private settle(request: PendingRequest, error?: unknown): void {
    if (request.settled) return;
    request.settled = true;
    const dropped = request.waiting.splice(0);
    this.changeQueue(-dropped.length, -dropped.reduce((sum, t) => sum + t.ids.length, 0));
    const at = this.requests.indexOf(request);
    if (at >= 0) this.requests.splice(at, 1);
    if (error === undefined) request.resolve(request.vectors);
    else request.reject(error);
    this.notifyIdle();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    while (this.inFlight < this.embedder.batchesInFlight && this.queuedTexts > 0) {
      // An idle scheduler with less than a batch waits briefly for company; a busy one batches what came meanwhile.
      if (this.inFlight === 0 && this.queuedTokens < this.options.limits.maxBatchTokens && this.options.batchWaitMs > 0 && !this.waited) {
        this.waited = true;
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.schedule();
        }, this.options.batchWaitMs);
        return;
      }
      this.waited = false;
      this.runBatch(this.pickBatch());
    }
  }

  private waited = false;

  /** The next batch: a fair window of waiting texts, longest first, filled to the budget. */
  private pickBatch(): PendingText[] {
    const { maxBatchTokens, maxBatchSize } = this.options.limits;
    const windowSize = WINDOW_BATCHES * maxBatchSize;
    const window: PendingText[] = [];
    for (let depth = 0; window.length < windowSize; depth++) {
      let found = false;
      for (const request of this.requests) {
        if (depth < request.waiting.length) {
          window.push(request.waiting[depth]);
          found = true;
          if (window.length === windowSize) break;
        }
      }
      if (!found) break;
    }
    window.sort((a, b) => b.ids.length - a.ids.length);
    const longest = window[0].ids.length;
    const batch = window.slice(0, Math.max(1, Math.min(maxBatchSize, Math.floor(maxBatchTokens / longest))));
    for (const text of batch) text.request.waiting.splice(text.request.waiting.indexOf(text), 1);
    this.changeQueue(-batch.length, -batch.reduce((sum, t) => sum + t.ids.length, 0));
    return batch;
  }

  private runBatch(batch: PendingText[]): void {
    this.inFlight++;
    const sequences = batch.map((t) => t.ids);
    this.embedder.embedSequences(sequences, 'mean', this.options.limits).then(
      ({ vectors, stats }) => {
        this.options.onBatch?.(batch.length, stats.tokens, stats.paddedTokens);
        batch.forEach((text, row) => {
          const { request } = text;
          if (request.settled) return;
          request.vectors[text.index] = vectors[row];
          if (--request.remaining === 0) this.settle(request);
        });
      },
      (error: unknown) => {
        // A text that does not fit in memory even alone fails its own request; the rest of the batch waits again.
        const culprit = error instanceof OutOfMemoryError ? batch[error.index] : undefined;
        if (culprit === undefined) {
          for (const { request } of batch) this.settle(request, error);
          return;
        }
        this.settle(culprit.request, error);
        const again = batch.filter((t) => !t.request.settled);
        for (const text of again) {
          const waiting = text.request.waiting;
          const at = waiting.findIndex((w) => w.index > text.index);
          waiting.splice(at < 0 ? waiting.length : at, 0, text);
        }
        this.changeQueue(again.length, again.reduce((sum, t) => sum + t.ids.length, 0));
      },
    ).finally(() => {
      this.inFlight--;
      this.schedule();
      this.notifyIdle();
    });
  }

  private changeQueue(texts: number, tokens: number): void {
    this.queuedTexts += texts;
    this.queuedTokens += tokens;
    this.options.onQueue?.(this.queuedTexts, this.queuedTokens);
  }

  private notifyIdle(): void {
    if (this.requests.length > 0 || this.inFlight > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
