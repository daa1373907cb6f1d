import { OutOfMemoryError } from '../errors.js';
import { isOutOfMemory } from './out-of-memory.js';

export interface BatchLimits {
  /** Most padded positions (B × longest length) in one batch. */
  readonly maxBatchTokens: number;
  /** Most texts in one batch. */
  readonly maxBatchSize: number;
  /** Most bytes the memory estimator may predict for one batch (weights included). */
  readonly memoryBudgetBytes: number;
  /** Most bytes of any single tensor (WebGPU's per-buffer limit). @default no limit */
  readonly maxTensorBytes?: number;
}

export interface Batch {
  /** Indices into the caller's list of sequences, longest first. */
  readonly indices: readonly number[];
  /** Padded length: the longest sequence's. */
  readonly length: number;
}

/** What a batch of `size` sequences padded to `length` is predicted to take. */
export type MemoryEstimator = (size: number, length: number) => { readonly totalBytes: number; readonly largestTensorBytes: number };

/**
 * Packs sequences into batches and runs them, halving on out-of-memory.
 *
 * Sequences are sorted longest first, so each batch holds texts of similar
 * length (little padding) and any memory trouble shows up in the first batch.
 * A batch grows while it stays under every limit; one sequence alone always
 * makes a batch. After an out-of-memory failure the batch is split in two and
 * retried, and the smaller size caps later batches of this processor. The cap
 * grows back, doubling, after {@link GROW_BACK_AFTER} batches in a row succeed
 * at it, so one transient failure does not halve every later call; a size that
 * keeps failing is found again at the cost of one retry.
 */
export class BatchProcessor {
  private sizeCap = Infinity;
  private successesAtCap = 0;

  constructor(
    private readonly limits: BatchLimits,
    private readonly estimate: MemoryEstimator,
  ) {}

  /** The current largest batch size, after any back-off. */
  get maxBatchSize(): number {
    return Math.min(this.limits.maxBatchSize, this.sizeCap);
  }

  /**
   * Packs sequences into batches. With `minBatches` > 1 (one per worker) no
   * batch takes more than its share, so every worker gets work.
   */
  plan(lengths: readonly number[], minBatches = 1): Batch[] {
    const cap = Math.min(this.maxBatchSize, Math.ceil(lengths.length / Math.max(1, minBatches)));
    const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
    const batches: Batch[] = [];
    let current: number[] = [];
    for (const index of order) {
      const length = current.length === 0 ? lengths[index] : lengths[current[0]];
      const size = current.length + 1;
      const fits = size <= cap && size * length <= this.limits.maxBatchTokens && this.withinMemory(size, length);
      if (current.length > 0 && !fits) {
        batches.push({ indices: current, length: lengths[current[0]] });
        current = [];
      }
      current.push(index);
    }
    if (current.length > 0) batches.push({ indices: current, length: lengths[current[0]] });
    return batches;
  }

  /**
   * Runs every batch through `runBatch`, up to `concurrency` at once.
   * Out-of-memory errors split the batch and count a retry; a lone sequence
   * that still fails is an {@link OutOfMemoryError} naming it; any other error
   * stops the run (after the batches in flight settle) and propagates.
   * `lengths` and `indexBase` turn batch indices into the caller's text indices.
   */
  async run(
    batches: readonly Batch[],
    lengths: readonly number[],
    runBatch: (batch: Batch) => Promise<void>,
    onRetry: () => void,
    { indexBase = 0, concurrency = 1 }: { indexBase?: number; concurrency?: number } = {},
  ): Promise<void> {
    const queue = [...batches];
    const active = new Set<Promise<void>>();
    const limit = Math.max(1, concurrency);
    let failure: { error: unknown } | undefined;
    const attempt = async (batch: Batch) => {
      try {
        await runBatch(batch);
        this.succeeded(batch.indices.length);
      } catch (error) {
        if (!isOutOfMemory(error)) throw error;
        if (batch.indices.length === 1) {
          throw new OutOfMemoryError(indexBase + batch.indices[0], batch.length, error);
        }
        this.sizeCap = Math.min(this.sizeCap, Math.ceil(batch.indices.length / 2));
        this.successesAtCap = 0;
        onRetry();
        queue.unshift(...split(batch, this.sizeCap, lengths));
      }
    };
    while (failure === undefined && (queue.length > 0 || active.size > 0)) {
      while (failure === undefined && queue.length > 0 && active.size < limit) {
        const batch = queue.shift()!;
        if (batch.indices.length > this.maxBatchSize) {
          queue.unshift(...split(batch, this.maxBatchSize, lengths));
          continue;
        }
        const running: Promise<void> = attempt(batch)
          .catch((error: unknown) => void (failure ??= { error }))
          .finally(() => active.delete(running));
        active.add(running);
      }
      if (active.size > 0) await Promise.race(active);
    }
    await Promise.allSettled(active);
    if (failure !== undefined) throw failure.error;
  }

  private withinMemory(size: number, length: number): boolean {
    const { totalBytes, largestTensorBytes } = this.estimate(size, length);
    return totalBytes <= this.limits.memoryBudgetBytes && largestTensorBytes <= (this.limits.maxTensorBytes ?? Infinity);
  }

  /** Counts a success at the backed-off size; enough of them in a row double it. */
  private succeeded(size: number): void {
    if (this.sizeCap === Infinity || size < this.sizeCap) return;
    if (++this.successesAtCap < GROW_BACK_AFTER) return;
    this.successesAtCap = 0;
    this.sizeCap = this.sizeCap * 2 >= this.limits.maxBatchSize ? Infinity : this.sizeCap * 2;
  }
}

/** Successful batches in a row at the backed-off size before it may double. */
export const GROW_BACK_AFTER = 8;

function split(batch: Batch, size: number, lengths: readonly number[]): Batch[] {
  const parts: Batch[] = [];
  for (let start = 0; start < batch.indices.length; start += size) {
    const indices = batch.indices.slice(start, start + size);
    parts.push({ indices, length: Math.max(...indices.map((i) => lengths[i])) });
  }
  return parts;
}
