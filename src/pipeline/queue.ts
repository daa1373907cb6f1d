import { CancelledError, OutOfMemoryError, QueueFullError, RequestTooLargeError } from '../errors.js';
import type { Pooling } from './pooling.js';
import { BatchPlanner, type BatchLimits, type MemoryEstimator } from './batcher.js';
import { isOutOfMemory } from './out-of-memory.js';
import type { StatsRecorder } from './stats.js';

/** One call's token id sequences, and how their batches must be run. */
export interface QueueRequest {
  /** Each with its [CLS] and [SEP], at most the maximum length. */
  readonly sequences: readonly Int32Array[];
  readonly limits: Omit<BatchLimits, 'maxTensorBytes'>;
  readonly pooling: Pooling;
  /** Told of every batch the request took part in, and of its retries. */
  readonly stats?: StatsRecorder;
  /** Withdraws the sequences not yet in a batch; the call rejects with {@link CancelledError}. */
  readonly signal?: AbortSignal;
  /** Refuse the request at once when the queue would then hold more tokens than this. */
  readonly maxQueueTokens?: number;
  /** Each sequence's pooled vector, as its batch comes back; `index` is its place in `sequences`. */
  readonly onVector: (index: number, vector: Float32Array) => void;
}

/** One forward pass: sequences right-padded to `length`. */
export interface QueuedBatch {
  readonly sequences: readonly Int32Array[];
  readonly length: number;
  readonly pooling: Pooling;
  readonly limits: BatchLimits;
}

export interface BatchResult {
  /** One pooled vector per sequence, in order. */
  readonly vectors: readonly Float32Array[];
  readonly estimatedBytes: number;
  readonly measuredPeakBytes: number;
}

export interface EmbeddingQueueOptions {
  /** Runs one batch: the model's forward pass and pooling. */
  readonly run: (batch: QueuedBatch) => Promise<BatchResult>;
  /** Predicted memory of a batch, for the budget. */
  readonly estimate: MemoryEstimator;
  /** The device's largest buffer, where it has one. */
  readonly maxTensorBytes?: number;
  /** Batches that run at once (one per worker): a batch takes no more than its share of what waits. */
  readonly concurrency: number;
  /** Batches kept in flight: `concurrency`, or more where host and device work overlap (a GPU). */
  readonly inFlight: number;
  /** Padded lengths at which the backend computes a batch another way (see `BatchPlanner`). @default none */
  readonly lengthBreaks?: readonly number[];
}

/** Watches the queue: the service's metrics. */
export interface QueueListener {
  /** Every forward batch that ran: texts in it, real and padded tokens. */
  onBatch?(texts: number, tokens: number, paddedTokens: number): void;
  /** Texts and tokens waiting, whenever they change. */
  onQueue?(texts: number, tokens: number): void;
}

interface PendingText {
  readonly request: PendingRequest;
  readonly index: number;
  readonly ids: Int32Array;
}

interface PendingRequest {
  readonly call: QueueRequest;
  /** Requests with the same key may share a batch: the same limits and pooling. */
  readonly key: string;
  readonly planner: BatchPlanner;
  /** Texts not yet taken into a batch, longest first (then in order): see {@link waitingOrder}. */
  readonly waiting: PendingText[];
  remaining: number;
  /** Batches of this request that run now. */
  running: number;
  settled: boolean;
  /** Removes its listener from the caller's signal: a signal that outlives many calls must not keep each one. */
  stopWatchingSignal?: () => void;
  /** Set when it failed: it rejects once its running batches have settled, so none outlives the call. */
  failure?: { error: unknown };
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Batches in view at once when picking the next one: a window of texts taken fairly from every request. */
const WINDOW_BATCHES = 4;

/**
 * A request's texts wait longest first, so that the window holds each
 * request's longest texts: one large call is then batched as if sorted
 * whole (little padding), and the longest text is the first to run alone
 * when memory runs short.
 */
function waitingOrder(a: PendingText, b: PendingText): number {
  return b.ids.length - a.ids.length || a.index - b.index;
}

/**
 * The one road from tokens to pooled vectors: every `embed` call, whoever
 * makes it (the library, the HTTP routes, the command line, a queue worker),
 * queues its sequences here, and one loop runs them in shared forward passes.
 *
 * Each batch is picked from a window that takes texts from the waiting
 * requests in turn (so a large request cannot starve small ones), sorted by
 * length so that texts of similar length share a batch (little padding), and
 * filled up to the token and memory budgets. Requests share batches when
 * their limits and pooling agree; what each asks of its vectors afterwards
 * (normalisation, Matryoshka size, precision) is its own. A batch that runs
 * out of memory is split and its texts wait again; a text that does not fit
 * even alone fails its own request. When nothing runs, a batch starts on the
 * next microtask, so calls made together share it; `batchWaitMs` > 0 makes
 * an idle queue wait that long for company when it holds less than a batch.
 */
export class EmbeddingQueue {
  /** How long an idle queue with less than a batch waits for company (the service sets it). */
  batchWaitMs = 0;
  private readonly requests: PendingRequest[] = [];
  private readonly planners = new Map<string, BatchPlanner>();
  private readonly listeners = new Set<QueueListener>();
  private queuedTexts = 0;
  private queuedTokens = 0;
  private running = 0;
  private wake: 'microtask' | NodeJS.Timeout | undefined;
  private waited = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: EmbeddingQueueOptions) {}

  /** Texts and tokens waiting, not counting those in batches that run. */
  get queue(): { texts: number; tokens: number } {
    return { texts: this.queuedTexts, tokens: this.queuedTokens };
  }

  /**
   * Queues one request; resolves once every sequence's vector has been given
   * to `onVector`. Throws {@link QueueFullError} or {@link RequestTooLargeError}
   * at once when the request's `maxQueueTokens` refuses it; rejects with an
   * {@link OutOfMemoryError} naming the sequence that does not fit alone, or
   * with the error of a batch it was in.
   */
  submit(call: QueueRequest): Promise<void> {
    const tokens = call.sequences.reduce((sum, ids) => sum + ids.length, 0);
    const { maxQueueTokens } = call;
    if (maxQueueTokens !== undefined) {
      if (tokens > maxQueueTokens) throw new RequestTooLargeError(tokens, maxQueueTokens);
      if (this.queuedTokens + tokens > maxQueueTokens) throw new QueueFullError(this.queuedTokens, maxQueueTokens);
    }
    if (call.signal?.aborted) return Promise.reject(new CancelledError());
    if (call.sequences.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const key = JSON.stringify([call.limits.maxBatchTokens, call.limits.maxBatchSize, call.limits.memoryBudgetBytes, call.pooling]);
      const request: PendingRequest = {
        call,
        key,
        planner: this.plannerFor(key, call.limits),
        waiting: [],
        remaining: call.sequences.length,
        running: 0,
        settled: false,
        resolve,
        reject,
      };
      call.sequences.forEach((ids, index) => request.waiting.push({ request, index, ids }));
      request.waiting.sort(waitingOrder);
      this.requests.push(request);
      this.changeQueue(call.sequences.length, tokens);
      const signal = call.signal;
      if (signal !== undefined) {
        const onAbort = () => this.settle(request, new CancelledError());
        signal.addEventListener('abort', onAbort, { once: true });
        request.stopWatchingSignal = () => signal.removeEventListener('abort', onAbort);
      }
      this.schedule();
    });
  }

  /** Resolves once nothing waits and nothing runs. */
  idle(): Promise<void> {
    if (this.requests.length === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Adds a listener; returns the function that removes it. */
  watch(listener: QueueListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One planner per set of limits, so a back-off holds for later calls with the same limits. */
  private plannerFor(key: string, limits: QueueRequest['limits']): BatchPlanner {
    let planner = this.planners.get(key);
    if (planner === undefined) {
      planner = new BatchPlanner({ ...limits, maxTensorBytes: this.options.maxTensorBytes }, this.options.estimate, this.options.lengthBreaks);
      this.planners.set(key, planner);
    }
    return planner;
  }

  /** Settles a request and drops its waiting texts from the queue. */
  private settle(request: PendingRequest, error?: unknown): void {
    if (request.settled) return;
    request.settled = true;
    request.stopWatchingSignal?.();
    const dropped = request.waiting.splice(0);
    if (dropped.length > 0) this.changeQueue(-dropped.length, -dropped.reduce((sum, t) => sum + t.ids.length, 0));
    const at = this.requests.indexOf(request);
    if (at >= 0) this.requests.splice(at, 1);
    if (error !== undefined) request.failure = { error };
    this.finishIfDone(request);
    this.notifyIdle();
  }

  private finishIfDone(request: PendingRequest): void {
    if (!request.settled) return;
    // A cancelled request answers at once: its caller has gone, and its running batches' vectors are dropped.
    const cancelled = request.failure?.error instanceof CancelledError;
    if (request.running > 0 && !cancelled) return;
    if (request.failure === undefined) request.resolve();
    else request.reject(request.failure.error);
  }

  private schedule(): void {
    if (this.wake !== undefined) return;
    if (this.running > 0) return this.fill();
    if (this.queuedTexts === 0) return;
    const group = this.nextGroup();
    if (this.batchWaitMs > 0 && !this.waited && this.groupTokens(group) < group[0].planner.limits.maxBatchTokens) {
      // An idle queue with less than a batch waits briefly for company; a busy one batches what came meanwhile.
      this.waited = true;
      this.wake = setTimeout(() => this.wakeUp(), this.batchWaitMs);
      return;
    }
    // Idle: start on the next microtask, so that calls made together (a Promise.all of embeds) share the batch.
    this.wake = 'microtask';
    queueMicrotask(() => this.wakeUp());
  }

  private wakeUp(): void {
    this.wake = undefined;
    this.fill();
  }

  private fill(): void {
    while (this.running < this.options.inFlight && this.queuedTexts > 0) {
      this.waited = false;
      const group = this.nextGroup();
      this.runBatch(group[0].planner, this.pickBatch(group));
    }
  }

  /** The waiting requests that share a batch with the oldest one. */
  private nextGroup(): PendingRequest[] {
    const first = this.requests.find((r) => r.waiting.length > 0)!;
    return this.requests.filter((r) => r.key === first.key && r.waiting.length > 0);
  }

  private groupTokens(group: readonly PendingRequest[]): number {
    return group.reduce((sum, r) => sum + r.waiting.reduce((s, t) => s + t.ids.length, 0), 0);
  }

  /** The next batch: a fair window of the group's waiting texts, longest first, filled to the budgets. */
  private pickBatch(group: readonly PendingRequest[]): PendingText[] {
    const { planner } = group[0];
    const windowSize = WINDOW_BATCHES * planner.maxBatchSize;
    const window: PendingText[] = [];
    for (let depth = 0; window.length < windowSize; depth++) {
      let found = false;
      for (const request of group) {
        if (depth >= request.waiting.length) continue;
        window.push(request.waiting[depth]);
        found = true;
        if (window.length === windowSize) break;
      }
      if (!found) break;
    }
    window.sort((a, b) => b.ids.length - a.ids.length);
    // With several workers no batch takes more than its share of what waits, so every idle worker gets work.
    const waiting = group.reduce((sum, r) => sum + r.waiting.length, 0);
    const share = Math.ceil(waiting / Math.max(1, this.options.concurrency - this.running));
    const batch = window.slice(0, planner.nextBatchSize(window.map((t) => t.ids.length), share));
    for (const text of batch) text.request.waiting.splice(text.request.waiting.indexOf(text), 1);
    this.changeQueue(-batch.length, -batch.reduce((sum, t) => sum + t.ids.length, 0));
    return batch;
  }

  private runBatch(planner: BatchPlanner, batch: PendingText[]): void {
    this.running++;
    const requests = [...new Set(batch.map((t) => t.request))];
    for (const request of requests) request.running++;
    const length = batch[0].ids.length;
    const { pooling } = batch[0].request.call;
    this.options
      .run({ sequences: batch.map((t) => t.ids), length, pooling, limits: planner.limits })
      .then(
        (result) => this.batchDone(planner, batch, requests, result),
        (error: unknown) => this.batchFailed(planner, batch, requests, error),
      )
      .finally(() => {
        this.running--;
        for (const request of requests) {
          request.running--;
          this.finishIfDone(request);
        }
        this.schedule();
        this.notifyIdle();
      });
  }

  private batchDone(planner: BatchPlanner, batch: readonly PendingText[], requests: readonly PendingRequest[], result: BatchResult): void {
    planner.succeeded(batch.length);
    const length = batch[0].ids.length;
    const tokens = (texts: readonly PendingText[]) => texts.reduce((sum, t) => sum + t.ids.length, 0);
    for (const listener of this.listeners) listener.onBatch?.(batch.length, tokens(batch), batch.length * length);
    for (const request of requests) {
      const own = batch.filter((t) => t.request === request);
      request.call.stats?.batchDone(own.length, tokens(own), own.length * length, result.estimatedBytes, result.measuredPeakBytes);
    }
    batch.forEach((text, row) => {
      const { request } = text;
      if (request.settled) return;
      request.call.onVector(text.index, result.vectors[row]);
      if (--request.remaining === 0) this.settle(request);
    });
  }

  private batchFailed(planner: BatchPlanner, batch: readonly PendingText[], requests: readonly PendingRequest[], error: unknown): void {
    if (!isOutOfMemory(error)) {
      for (const request of requests) this.settle(request, error);
      return;
    }
    if (batch.length === 1) {
      this.settle(batch[0].request, new OutOfMemoryError(batch[0].index, batch[0].ids.length, error));
      return;
    }
    // Too large for memory: later batches take half as many, and these texts wait again in their order.
    planner.failed(batch.length);
    for (const request of requests) if (request.call.stats !== undefined) request.call.stats.retries++;
    const again = batch.filter((t) => !t.request.settled);
    for (const text of again) {
      const { waiting } = text.request;
      const at = waiting.findIndex((w) => waitingOrder(w, text) > 0);
      waiting.splice(at < 0 ? waiting.length : at, 0, text);
    }
    this.changeQueue(again.length, again.reduce((sum, t) => sum + t.ids.length, 0));
  }

  private changeQueue(texts: number, tokens: number): void {
    this.queuedTexts += texts;
    this.queuedTokens += tokens;
    for (const listener of this.listeners) listener.onQueue?.(this.queuedTexts, this.queuedTokens);
  }

  private notifyIdle(): void {
    if (this.requests.length > 0 || this.running > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
