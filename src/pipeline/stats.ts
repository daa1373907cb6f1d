/** Measured facts about one `embed` call. */
export interface EmbedStats {
  /** Backend the call ran on. */
  readonly backend: string;
  readonly wallTimeMs: number;
  readonly texts: number;
  /** Sequences run through the model: the texts, or more with `longText: 'mean'` (one per window). */
  readonly windows: number;
  /** Real tokens run through the model, [CLS] and [SEP] included, after truncation. */
  readonly tokens: number;
  /** Positions computed, padding included: the sum of B × T over the batches that succeeded. */
  readonly paddedTokens: number;
  /** Share of computed positions that were padding: `1 − tokens / paddedTokens`. */
  readonly paddingRatio: number;
  /** Batches that succeeded. */
  readonly batches: number;
  /** Batches that ran out of memory and were split and run again. */
  readonly retries: number;
  /** Texts cut to the maximum length. */
  readonly truncatedTexts: number;
  readonly textsPerSecond: number;
  readonly tokensPerSecond: number;
  readonly msPerText: number;
  /** The memory estimator's prediction for the largest batch run (weights included). */
  readonly estimatedPeakBytes: number;
  /**
   * Highest tensor memory the backend held (weights included), sampled after
   * each batch's forward pass and inside each layer where its peak falls.
   */
  readonly measuredPeakBytes: number;
}

/** Accumulates counts while batches run; {@link finish} derives the rates. */
export class StatsRecorder {
  private readonly started = performance.now();
  tokens = 0;
  windows = 0;
  paddedTokens = 0;
  batches = 0;
  retries = 0;
  truncatedTexts = 0;
  estimatedPeakBytes = 0;
  measuredPeakBytes = 0;

  constructor(
    private readonly backend: string,
    private readonly texts: number,
  ) {}

  batchDone(sequences: number, tokens: number, paddedTokens: number, estimatedBytes: number, measuredBytes: number): void {
    this.batches++;
    this.windows += sequences;
    this.tokens += tokens;
    this.paddedTokens += paddedTokens;
    this.estimatedPeakBytes = Math.max(this.estimatedPeakBytes, estimatedBytes);
    this.measuredPeakBytes = Math.max(this.measuredPeakBytes, measuredBytes);
  }

  finish(): EmbedStats {
    const wallTimeMs = performance.now() - this.started;
    const seconds = wallTimeMs / 1000;
    return {
      backend: this.backend,
      wallTimeMs,
      texts: this.texts,
      windows: this.windows,
      tokens: this.tokens,
      paddedTokens: this.paddedTokens,
      paddingRatio: this.paddedTokens === 0 ? 0 : 1 - this.tokens / this.paddedTokens,
      batches: this.batches,
      retries: this.retries,
      truncatedTexts: this.truncatedTexts,
      textsPerSecond: seconds > 0 ? this.texts / seconds : 0,
      tokensPerSecond: seconds > 0 ? this.tokens / seconds : 0,
      msPerText: this.texts > 0 ? wallTimeMs / this.texts : 0,
      estimatedPeakBytes: this.estimatedPeakBytes,
      measuredPeakBytes: this.measuredPeakBytes,
    };
  }
}
