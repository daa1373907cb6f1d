import { availableParallelism, freemem, totalmem } from 'node:os';
import { basename, resolve } from 'node:path';
import { backendNamed, type Backend } from './backends/backend.js';
import { selectBackend, type BackendName } from './backends/select.js';
import type { GpuAdapterReport } from './backends/webgpu/adapter.js';
import { wasmWeightCopies } from './backends/xnnpack-packer.js';
import {
  checkLoadOptions,
  LOAD_DEFAULTS,
  resolveEmbedOptions,
  type EmbedOptions,
  type EmbedResult,
  type LoadEmbedderOptions,
  type ResolvedEmbedOptions,
} from './pipeline/embed-options.js';
import { cachedModel, isHubId } from './download/model-cache.js';
import { BackendError, ConfigError, InputError, NomicEmbedError, OutOfMemoryError } from './errors.js';
import { describe } from './options.js';
import type { AttentionKernel } from './model/attention.js';
import { layoutNotice } from './model/load-model.js';
import type { NomicBertModel } from './model/nomic-bert.js';
import type { Dtype } from './model/projection.js';
import { finishVector } from './pipeline/finish-vector.js';
import { quantize, rangesOf, unitVectorRanges, type Precision, type QuantizationRanges, type VectorOf } from './pipeline/quantize.js';
import { TextTokenizer } from './pipeline/tokenizer.js';
import { LocalRunner } from './pool/local-runner.js';
import type { BatchRunner } from './pool/runner.js';
import { WorkerPoolRunner } from './pool/worker-pool.js';
import { EmbeddingQueue, type BatchResult, type QueuedBatch } from './pipeline/queue.js';
import { estimateMemory, queryBlockFor } from './pipeline/memory.js';
import { StatsRecorder } from './pipeline/stats.js';
import { availableMemory, defaultWorkerCount } from './pipeline/workers.js';
import type { NomicBertConfig } from './weights/config.js';
import { runtimeLayoutFile } from './weights/layout-cache.js';
import { openCheckpoint, type CheckedCheckpoint } from './weights/load.js';
import { readConfig, weightsPath } from './weights/model-folder.js';

/**
 * Loads a model onto a backend: a folder (`config.json`, `model.safetensors`,
 * `tokenizer.json`, optionally `tokenizer_config.json`), or a Hugging Face hub
 * repository id, downloaded into the cache on first use (see
 * `LoadEmbedderOptions.revision`, `offline`, `cacheDir`). A path that exists
 * is always a folder.
 *
 * @example
 * const embedder = await loadEmbedder('nomic-ai/nomic-embed-text-v1.5');
 * const { embeddings } = await embedder.embed(['hello'], { task: 'search_query' });
 * await embedder.dispose();
 */
export async function loadEmbedder(source: string, options: LoadEmbedderOptions = {}): Promise<Embedder> {
  checkLoadOptions(options);
  if (typeof source !== 'string' || source === '') throw new InputError('source', `must be a model folder or a hub repository id, got ${describe(source)}`);
  const fromHub = isHubId(source);
  if (!fromHub && options.revision !== undefined) {
    throw new InputError('revision', `applies to a hub repository id; ${source} is a folder, and a folder is never downloaded into`);
  }
  const dir = fromHub ? await cachedModel(source, options) : source;
  const modelName = basename(fromHub ? source : resolve(dir));
  const {
    backend = LOAD_DEFAULTS.backend,
    maxLength,
    rotaryScalingFactor,
    weightsFile = LOAD_DEFAULTS.weightsFile,
    layoutCache = LOAD_DEFAULTS.layoutCache,
    dtype = LOAD_DEFAULTS.dtype,
  } = options;
  const modelOptions = { weightsFile, rotary_scaling_factor: rotaryScalingFactor, layoutCache, dtype };
  const cores = availableParallelism();
  // Threads per worker: as asked, else the cores shared among the workers asked for.
  const threads = options.threads ?? Math.max(1, Math.floor(cores / (options.workers ?? 1)));
  // The backend starts first (with several workers the model runs in them, and this thread's backend stays
  // single-threaded): the threaded wasm build's pthread worker loads the module on another core, most of its
  // 0.15 s start, while this thread reads the config, the tokenizer and the checkpoint's header. Their errors
  // still come before any weight is read, once the backend has settled, so no start goes on behind the caller.
  const starting = selectBackend(backend, undefined, { wasmThreads: (options.workers ?? 1) === 1 ? threads : 1 });
  let config: NomicBertConfig, tokenizer: TextTokenizer, checkpoint: CheckedCheckpoint;
  try {
    config = readConfig(dir, modelOptions);
    tokenizer = TextTokenizer.fromDir(dir, config.n_positions, maxLength);
    checkpoint = openCheckpoint(weightsPath(dir, weightsFile), config);
    checkpoint.file.close();
  } catch (error) {
    await starting.catch(() => undefined);
    throw error;
  }
  const active = backendNamed(await starting);
  const precisions = active.dtypes();
  if (!precisions.supported.includes(dtype)) throw new ConfigError('dtype', dtype, `not on the ${active.name} backend: ${precisions.q8Failure}`);
  const typicalBatch = estimateMemory(config, 16, 512, { attention: active.attention(), ffnWidth: checkpoint.ffnWidth });
  const workers =
    options.workers ??
    // Where one instance computes on one core (wasm whose threads could not start), workers use the others.
    (active.needsWorkersForCores() && options.threads === undefined
      ? defaultWorkerCount({
          oneCorePerInstance: true,
          cores,
          availableBytes: availableMemory(freemem(), process.constrainedMemory?.()),
          batch: typicalBatch,
          weightCopies: wasmWeightCopies(),
        })
      : 1);
  const device = active.device();
  if (device !== undefined) checkTensorLimit(config, checkpoint.ffnWidth, device);
  let runner: BatchRunner;
  if (workers === 1) {
    active.reserve(typicalBatch.totalBytes);
    const model = await active.loadModel(dir, modelOptions);
    runner = new LocalRunner(model, active.guard, active.threads(), active.batchesInFlight);
  } else {
    const wasmThreads = active.threads() > 1 || options.threads !== undefined ? threads : 1;
    // Made here once, not by every worker at the same time.
    if (layoutCache !== false) runtimeLayoutFile(weightsPath(dir, weightsFile), config, layoutNotice);
    runner = await WorkerPoolRunner.start(workers, { dir, backend: active.name, modelOptions, wasmThreads, reserveBytes: typicalBatch.totalBytes });
  }
  const embedder = new Embedder(runner, tokenizer, active.name, config, device, dir, dtype, modelName);
  // The first products compile shaders (WebGPU; wasm has packed its weights while loading), and the first
  // texts warm the tokenizer, pipeline and JIT up: done here, the first call is about as fast as the next
  // ones. See WARM_UP_TEXTS for why two, and which.
  for (const text of WARM_UP_TEXTS) await embedder.embed([text]);
  return embedder;
}

/** A weight above the adapter's per-buffer limit can never be bound; say so before uploading anything. */
function checkTensorLimit(config: NomicBertConfig, ffnWidth: number, device: GpuAdapterReport): void {
  const weights = estimateMemory(config, 1, 1, { ffnWidth });
  if (weights.largestTensorBytes > device.maxStorageBufferBindingSize) {
    throw new BackendError(
      'webgpu',
      `the word embeddings take ${weights.largestTensorBytes} bytes, more than this adapter binds in one buffer ` +
        `(maxStorageBufferBindingSize ${device.maxStorageBufferBindingSize}); use another backend`,
    );
  }
}

/** Texts in, one vector per text out. Owns its model: call {@link dispose} when done. */
export class Embedder {
  /** The attention kernel batches run with on this backend (on wasm, batches of short texts run `batched`). */
  readonly attention: AttentionKernel;
  /** What differs by backend: the attention kernel per batch, the default memory budget. */
  private readonly engine: Backend;
  /**
   * The one batch queue every call goes through: concurrent `embed` calls (and
   * the service's requests) share forward batches here.
   */
  readonly queue: EmbeddingQueue;

  constructor(
    /** Where batches run; tests may wrap its `run` to inject faults. */
    readonly runner: BatchRunner,
    readonly tokenizer: TextTokenizer,
    /** The backend this embedder runs on. */
    readonly backend: BackendName,
    readonly config: NomicBertConfig,
    /** The GPU adapter on `webgpu`: vendor, architecture, description, whether it is software, its buffer limits. */
    readonly device?: GpuAdapterReport,
    /** The model folder it was loaded from. */
    readonly modelDir?: string,
    /** The precision its products run in (see `LoadEmbedderOptions.dtype`). */
    readonly dtype: Dtype = 'fp32',
    /** The model's name: a hub repository's (`nomic-embed-text-v1.5`), else its folder's. */
    readonly modelName = modelDir === undefined ? 'model' : basename(resolve(modelDir)),
  ) {
    this.engine = backendNamed(backend);
    this.attention = this.engine.attention();
    this.queue = new EmbeddingQueue({
      run: (batch) => this.runBatch(batch),
      estimate: (b, l) => estimateMemory(this.config, b, l, { attention: this.attention }),
      maxTensorBytes: device?.maxStorageBufferBindingSize,
      concurrency: runner.concurrency,
      inFlight: runner.inFlight,
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
      defaultMemoryBudgetBytes: this.engine.defaultMemoryBudget(totalmem()),
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
      const pending = chunk.map(() => ({ sum: new Float64Array(this.config.n_embd), weight: 0, left: 0 }));
      for (const i of owner) pending[i].left++;
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
            // The token-weighted mean of a text's windows (one window: the text's own vector).
            const tokens = windows[w].length;
            vector.forEach((x, d) => (text.sum[d] += x * tokens));
            text.weight += tokens;
            if (--text.left > 0) return;
            const pooled = Float32Array.from(text.sum, (x) => x / text.weight);
            embeddings[start + owner[w]] = quantize(finishVector(pooled, output), precision as P, ranges);
            settings.onProgress?.(++done, texts.length);
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

