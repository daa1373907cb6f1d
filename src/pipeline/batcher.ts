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

/** What a batch of `size` sequences padded to `length` is predicted to take. */
export type MemoryEstimator = (size: number, length: number) => { readonly totalBytes: number; readonly largestTensorBytes: number };

/**
 * Decides how large the next batch may be, and backs off on out-of-memory.
 *
 * Given waiting sequences sorted longest first, a batch takes the first ones
 * (padded to the first's length) while it stays under every limit and on the
 * first's side of every length break (where the backend changes kernels, so
 * that a text's vector does not depend on which texts it is batched with);
 * one sequence alone always makes a batch. After an out-of-memory failure the
 * size that failed is halved, and the smaller size caps later batches. The
 * cap grows back, doubling, after {@link GROW_BACK_AFTER} batches in a row
 * succeed at it, so one transient failure does not halve every later call; a
 * size that keeps failing is found again at the cost of one retry.
 */
export class BatchPlanner {
  private sizeCap = Infinity;
  private successesAtCap = 0;

  constructor(
    readonly limits: BatchLimits,
    private readonly estimate: MemoryEstimator,
    /** Padded lengths at which the backend computes a batch another way: no batch holds texts from both sides of one. */
    private readonly lengthBreaks: readonly number[] = [],
  ) {}

  /** The current largest batch size, after any back-off. */
  get maxBatchSize(): number {
    return Math.min(this.limits.maxBatchSize, this.sizeCap);
  }

  /**
   * How many of `lengths` (longest first) the next batch takes: at least one,
   * at most `share` (so that several workers each get a batch).
   */
  nextBatchSize(lengths: readonly number[], share = Infinity): number {
    const cap = Math.min(this.maxBatchSize, share, lengths.length);
    const length = lengths[0];
    const side = this.sideOf(length);
    let size = 1;
    while (size < cap && this.sideOf(lengths[size]) === side && (size + 1) * length <= this.limits.maxBatchTokens && this.withinMemory(size + 1, length)) {
      size++;
    }
    return size;
  }

  /** A batch of `size` ran out of memory: later batches take at most half as many. */
  failed(size: number): void {
    this.sizeCap = Math.min(this.sizeCap, Math.ceil(size / 2));
    this.successesAtCap = 0;
  }

  /** Counts a success at the backed-off size; enough of them in a row double it. */
  succeeded(size: number): void {
    if (this.sizeCap === Infinity || size < this.sizeCap) return;
    if (++this.successesAtCap < GROW_BACK_AFTER) return;
    this.successesAtCap = 0;
    this.sizeCap = this.sizeCap * 2 >= this.limits.maxBatchSize ? Infinity : this.sizeCap * 2;
  }

  /** How many breaks lie below `length`. */
  private sideOf(length: number): number {
    return this.lengthBreaks.filter((limit) => length > limit).length;
  }

  private withinMemory(size: number, length: number): boolean {
    const { totalBytes, largestTensorBytes } = this.estimate(size, length);
    return totalBytes <= this.limits.memoryBudgetBytes && largestTensorBytes <= (this.limits.maxTensorBytes ?? Infinity);
  }
}

/** Successful batches in a row at the backed-off size before it may double. */
export const GROW_BACK_AFTER = 8;
