import type { GpuAdapterReport } from './backends/webgpu/adapter.js';
import type { BackendPolicy } from './backends/policy.js';
import type { BackendName } from './backends/select.js';
import type { EmbedOptions, EmbedResult, ResolvedEmbedOptions } from './pipeline/embed-options.js';
import { resolveEmbedOptions } from './pipeline/embed-options.js';
import { NomicEmbedError, OutOfMemoryError } from './errors.js';
import type { AttentionKernel } from './model/attention.js';
import type { NomicBertModel } from './model/nomic-bert.js';
import type { Dtype } from './model/projection.js';
import { finishVector } from './pipeline/finish-vector.js';
import { quantize, rangesOf, unitVectorRanges, type Precision, type QuantizationRanges, type VectorOf } from './pipeline/quantize.js';
import type { TextTokenizer } from './pipeline/tokenizer.js';
import { LocalRunner } from './pool/local-runner.js';
import type { BatchRunner } from './pool/runner.js';
import { EmbeddingQueue, type BatchResult, type QueuedBatch } from './pipeline/queue.js';
import { estimateMemory, queryBlockFor } from './pipeline/memory.js';
import { StatsRecorder } from './pipeline/stats.js';
import type { NomicBertConfig } from './weights/config.js';

/**
 * The embedder itself, wherever it runs: texts through the tokenizer, the one
 * batch queue and a runner, and each vector finished. Loading it is the
 * runtime's part (`embedder.ts` in Node, `browser/` in a page).
 */
/** What an {@link Embedder} knows of where it came from and what it runs on. */
export interface EmbedderDetails {
  readonly modelName: string;
  /** The memory the default `memoryBudgetBytes` is a share of (see `BackendPolicy.defaultMemoryBudget`). */
  readonly machineBytes: number;
  readonly device?: GpuAdapterReport;
  readonly modelDir?: string;
  /** @default 'fp32' */
  readonly dtype?: Dtype;
}

/** Texts in, one vector per text out. Owns its model: call {@link dispose} when done. */
export class Embedder {
  /** The attention kernel batches run with on this backend (on wasm, batches of short texts run `batched`). */
  readonly attention: AttentionKernel;
  /**
   * The one batch queue every call goes through: concurrent `embed` calls (and
   * the service's requests) share forward batches here.
   */
  readonly queue: EmbeddingQueue;

  /** The backend this embedder runs on. */
  readonly backend: BackendName;
  /** The GPU adapter on `webgpu`: vendor, architecture, description, whether it is software, its buffer limits. */
  readonly device?: GpuAdapterReport;
  /** The model folder it was loaded from (in Node). */
  readonly modelDir?: string;
  /** The precision its products run in (see `LoadEmbedderOptions.dtype`). */
  readonly dtype: Dtype;
  /** The model's name: a hub repository's (`nomic-embed-text-v1.5`), else its folder's. */
  readonly modelName: string;
  /** The memory the default budget is a share of: the machine's. */
  private readonly machineBytes: number;

  constructor(
    /** Where batches run; tests may wrap its `run` to inject faults. */
    readonly runner: BatchRunner,
    readonly tokenizer: TextTokenizer,
    /** The backend's batch policy: the attention kernel per batch, the default memory budget. */
    private readonly engine: BackendPolicy,
    readonly config: NomicBertConfig,
    details: EmbedderDetails,
  ) {
    this.backend = engine.name;
    this.device = details.device;
    this.modelDir = details.modelDir;
    this.dtype = details.dtype ?? 'fp32';
    this.modelName = details.modelName;
    this.machineBytes = details.machineBytes;
    this.attention = this.engine.attention();
    this.queue = new EmbeddingQueue({
      run: (batch) => this.runBatch(batch),
      estimate: (b, l) => estimateMemory(this.config, b, l, { attention: this.attention }),
      maxTensorBytes: details.device?.maxStorageBufferBindingSize,
      concurrency: runner.concurrency,
      inFlight: runner.inFlight,
      lengthBreaks: attentionBreaks(engine, config.headDim, tokenizer.maxLength),
    });
  }

  /** The model, when it runs in this thread (`workers: 1`). */
  get model(): NomicBertModel {
    if (!(this.runner instanceof LocalRunner)) throw new NomicEmbedError('this embedder runs its model in worker threads');
    return this.runner.model;
  }

  /** Worker threads in use; 1 when the model runs in this thread. */
  get workers(): number {
    return this.runner.concurrency;
  }

  /** Batches kept in flight: one per worker, and two on a GPU (one encoded while the device runs the other). */
  get batchesInFlight(): number {
    return this.runner.inFlight;
  }

  /** The batch budget of calls that give no `maxBatchTokens`: the backend's (see `EmbedOptions.maxBatchTokens`). */
  get defaultMaxBatchTokens(): number {
    return this.engine.defaultMaxBatchTokens;
  }

  /** Threads each worker's (or this thread's) matrix products use: the wasm backend's threaded build; 1 elsewhere. */
  get threads(): number {
    return this.runner.threads;
  }

  /**
   * Embeds `texts`; the result keeps their order. See {@link EmbedOptions} for
   * the defaults. Calls made at the same time share forward batches.
   */
  async embed<P extends Precision = 'float32'>(texts: readonly string[], options: EmbedOptions<P> = {}): Promise<EmbedResult<VectorOf<P>>> {
    const settings = resolveEmbedOptions(texts, options, {
      hiddenSize: this.config.n_embd,
      backend: this.backend,
      defaultMemoryBudgetBytes: this.engine.defaultMemoryBudget(this.machineBytes),
      defaultMaxBatchTokens: this.engine.defaultMaxBatchTokens,
    });
    const { output, precision } = settings;
    // No await unless ranges are calibrated: calls made together then reach the queue in the same turn, and share a batch.
    const ranges = needsCalibration(settings, options) ? await this.calibrate(options) : givenRanges(settings, options);
    const stats = new StatsRecorder(this.backend, texts.length);
    const embeddings = new Array<VectorOf<P>>(texts.length);
    let done = 0;
    for (let start = 0; start < texts.length; start += settings.chunkSize) {
      const chunk = texts.slice(start, start + settings.chunkSize);
      const { windows, owner } = this.tokenize(chunk, start, settings, stats);
      // A text's windows' token-weighted sum, made only for texts of more than one window.
      const pending = chunk.map(() => ({ sum: undefined as Float64Array | undefined, weight: 0, left: 0 }));
      for (const i of owner) pending[i].left++;
      const finish = (w: number, pooled: Float32Array) => {
        embeddings[start + owner[w]] = quantize(finishVector(pooled, output), precision as P, ranges);
        settings.onProgress?.(++done, texts.length);
      };
      await this.queue
        .submit({
          sequences: windows,
          limits: settings.limits,
          pooling: output.pooling,
          stats,
          signal: settings.signal,
          maxQueueTokens: settings.maxQueueTokens,
          onVector: (w, vector) => {
            const text = pending[owner[w]];
            // One window: the text's own vector (its weighted mean would round back to it exactly).
            if (text.sum === undefined && text.left === 1) return finish(w, vector);
            // The token-weighted mean of a text's windows, summed in float64.
            const tokens = windows[w].length;
            const sum = (text.sum ??= new Float64Array(vector.length));
            for (let d = 0; d < vector.length; d++) sum[d] += vector[d] * tokens;
            text.weight += tokens;
            if (--text.left > 0) return;
            const pooled = new Float32Array(sum.length);
            for (let d = 0; d < sum.length; d++) pooled[d] = sum[d] / text.weight;
            finish(w, pooled);
          },
        })
        .catch((error: unknown) => {
          // The queue names the window; the caller knows texts.
          if (error instanceof OutOfMemoryError) throw new OutOfMemoryError(start + owner[error.index], error.tokens, error.cause);
          throw error;
        });
    }
    return { embeddings, dimensions: output.dimensions, precision, ranges, stats: stats.finish() };
  }

  /** Each text of a chunk as one sequence, or as several windows with `longText: 'mean'`; `owner[w]` is window w's text. */
  private tokenize(chunk: readonly string[], start: number, settings: ResolvedEmbedOptions, stats: StatsRecorder) {
    const windows: Int32Array[] = [];
    const owner: number[] = [];
    chunk.forEach((text, i) => {
      const parts =
        settings.longText === 'mean'
          ? this.tokenizer.windows(text, settings.task, settings.overlap)
          : [this.tokenizer.encode(text, settings.task, settings.truncation, start + i)].map((t) => {
              if (t.truncatedTokens > 0) stats.truncatedTexts++;
              return t.ids;
            });
      for (const ids of parts) {
        windows.push(ids);
        owner.push(i);
      }
    });
    return { windows, owner };
  }

  /** int8/uint8 ranges from the calibration texts' embeddings, made with the same options. */
  private async calibrate(options: EmbedOptions<Precision>): Promise<QuantizationRanges> {
    const { precision, ranges, calibration, onProgress, ...same } = options;
    return rangesOf((await this.embed(calibration!, same)).embeddings);
  }

  /** One forward batch from the queue: pooled vectors, and what it was predicted and measured to take. */
  private async runBatch({ sequences, length, pooling, limits }: QueuedBatch): Promise<BatchResult> {
    const B = sequences.length;
    const attention = this.engine.attention(length, this.config.headDim);
    const queryBlock = queryBlockFor(this.config, B, length, limits.memoryBudgetBytes, attention);
    const { vectors, measuredPeakBytes } = await this.runner.run({ sequences, length, queryBlock, attention, pooling });
    const D = this.config.n_embd;
    return {
      vectors: sequences.map((_, row) => vectors.slice(row * D, (row + 1) * D)),
      estimatedBytes: estimateMemory(this.config, B, length, { queryBlock, attention }).totalBytes,
      measuredPeakBytes,
    };
  }

  /** Frees the model and ends any worker threads; safe to call twice. */
  dispose(): Promise<void> {
    return this.runner.dispose();
  }
}

/** Whether int8/uint8 ranges come from calibration texts (given ranges take precedence). */
function needsCalibration(settings: ResolvedEmbedOptions, options: EmbedOptions<Precision>): boolean {
  return (settings.precision === 'int8' || settings.precision === 'uint8') && options.ranges === undefined && options.calibration !== undefined;
}

/** int8/uint8 ranges without calibration: given, or the unit-vector default. */
function givenRanges(settings: ResolvedEmbedOptions, options: EmbedOptions<Precision>): QuantizationRanges | undefined {
  if (settings.precision !== 'int8' && settings.precision !== 'uint8') return undefined;
  return options.ranges ?? unitVectorRanges(settings.output.dimensions);
}

/**
 * The first pass runs while V8 still compiles the per-op JavaScript, on the
 * core XNNPACK's second thread needs, and is the slowest: a text of five
 * tokens runs the same JavaScript as any other at a third of a query's
 * compute. The second, of a query's length, runs XNNPACK's kernels for such
 * products once. On two cores, against two query-length texts, this cut about
 * 0.1 s from the load (median of paired runs), and the first call after it
 * was as close to the second.
 */
const WARM_UP_TEXTS = ['warm-up', 'warming up: a short text through every stage once'];


/**
 * Runs the warm-up texts through a new embedder: the first products compile
 * shaders (WebGPU; wasm has packed its weights while loading), and the first
 * texts warm the tokenizer, pipeline and JIT up, so the first call is about as
 * fast as the next ones.
 */
export async function warmUp(embedder: Embedder): Promise<void> {
  for (const text of WARM_UP_TEXTS) await embedder.embed([text]);
}

/**
 * The padded lengths up to `maxLength` after which `policy` picks another
 * attention kernel. Kernels round differently, so batches are kept from
 * straddling them: a text then gets the same vector whatever it is batched
 * with (bit for bit on wasm's own kernel, which also ignores padding).
 */
function attentionBreaks(policy: BackendPolicy, headDim: number, maxLength: number): number[] {
  const breaks: number[] = [];
  for (let length = 1; length < maxLength; length++) {
    if (policy.attention(length, headDim) !== policy.attention(length + 1, headDim)) breaks.push(length);
  }
  return breaks;
}
