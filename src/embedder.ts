import { existsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { selectBackend, type BackendChoice, type BackendName } from './backends/select.js';
import { InputError, ModelFilesError, NomicEmbedError } from './errors.js';
import { loadModel, readConfig } from './model/load-model.js';
import type { NomicBertModel } from './model/nomic-bert.js';
import type { OutputSpec } from './pipeline/batch-job.js';
import { BatchProcessor, type Batch } from './pipeline/batcher.js';
import { estimateMemory, queryBlockFor } from './pipeline/memory.js';
import type { Pooling } from './pipeline/pooling.js';
import { StatsRecorder, type EmbedStats } from './pipeline/stats.js';
import { TASK_PREFIXES, TextTokenizer, type Task, type TokenizedText, type Truncation } from './pipeline/tokenizer.js';
import { LocalRunner } from './pool/local-runner.js';
import type { BatchRunner } from './pool/runner.js';
import { WorkerPoolRunner } from './pool/worker-pool.js';
import type { NomicBertConfig } from './weights/config.js';
import { openCheckpoint } from './weights/load.js';

export interface LoadEmbedderOptions {
  /** Which tfjs backend to run on; `auto` takes the fastest that works here. @default 'auto' */
  readonly backend?: BackendChoice;
  /**
   * Longest sequence in tokens, [CLS] and [SEP] included.
   * @default `model_max_length` of tokenizer_config.json, else the config's `n_positions` (8192)
   */
  readonly maxLength?: number;
  /**
   * Dynamic NTK rotary scaling factor, replacing the config's. Nomic recommends 2
   * for inputs longer than `max_trained_positions` (2048).
   * @default the config's `rotary_scaling_factor` (null: off)
   */
  readonly rotaryScalingFactor?: number | null;
  /** Weights file inside the model folder. @default 'model.safetensors' */
  readonly weightsFile?: string;
  /**
   * Worker threads, each with its own backend and copy of the model. The wasm
   * backend computes on one thread per instance, so several are how it uses
   * several cores; 1 runs the model in this thread.
   * @default the number of cores on wasm, else 1 (libtensorflow threads by itself)
   */
  readonly workers?: number;
}

export interface EmbedOptions {
  /** Nomic task prefix added to every text; none when undefined. @default undefined */
  readonly task?: Task;
  /**
   * Matryoshka size. When set, Nomic's recipe runs: affine-free layer norm,
   * truncation, L2 normalisation. For nomic-embed-text-v1.5: 768, 512, 256, 128 or 64.
   * @default undefined: the full pooled vector, L2-normalised
   */
  readonly dimensions?: number;
  /**
   * L2-normalise the output. false returns the raw pooled vector (cut to
   * `dimensions` when set, without the Matryoshka layer norm).
   * @default true
   */
  readonly normalize?: boolean;
  /** How token states become one vector. @default 'mean' */
  readonly pooling?: Pooling;
  /** A text longer than `maxLength`: cut it (keeping [SEP]) or throw. @default 'truncate' */
  readonly truncation?: Truncation;
  /** Most padded tokens (texts × longest length) in one batch. @default 8192 */
  readonly maxBatchTokens?: number;
  /** Most texts in one batch. @default 64 */
  readonly maxBatchSize?: number;
  /**
   * Tensor memory one batch may be predicted to use, weights included; long
   * inputs switch to blocked attention to stay under it.
   * @default 3 GiB on wasm (its heap tops out at 4 GiB), else half the machine's memory up to 8 GiB
   */
  readonly memoryBudgetBytes?: number;
  /** Texts tokenized and batched at a time, so huge inputs do not hold every token at once. @default 4096 */
  readonly chunkSize?: number;
  /** Called after each batch with the number of texts done so far and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface EmbedResult {
  /** One vector per input text, in input order. */
  readonly embeddings: Float32Array[];
  readonly dimensions: number;
  readonly stats: EmbedStats;
}

const EMBED_OPTION_NAMES: readonly (keyof EmbedOptions)[] = [
  'task', 'dimensions', 'normalize', 'pooling', 'truncation', 'maxBatchTokens',
  'maxBatchSize', 'memoryBudgetBytes', 'chunkSize', 'onProgress',
];
const LOAD_OPTION_NAMES: readonly (keyof LoadEmbedderOptions)[] = [
  'backend', 'maxLength', 'rotaryScalingFactor', 'weightsFile', 'workers',
];

/** Matryoshka sizes nomic-embed-text-v1.5 was trained for. */
export const NOMIC_V15_DIMENSIONS = [768, 512, 256, 128, 64] as const;

/**
 * Loads a model folder (`config.json`, `model.safetensors`, `tokenizer.json`,
 * optionally `tokenizer_config.json`) onto a backend.
 *
 * @example
 * const embedder = await loadEmbedder('weights/nomic-embed-text-v1.5');
 * const { embeddings } = await embedder.embed(['hello'], { task: 'search_query' });
 * embedder.dispose();
 */
export async function loadEmbedder(dir: string, options: LoadEmbedderOptions = {}): Promise<Embedder> {
  checkOptionNames('loadEmbedder options', options, LOAD_OPTION_NAMES);
  const { backend = 'auto', maxLength, rotaryScalingFactor, weightsFile } = options;
  if (maxLength !== undefined) checkInteger('maxLength', maxLength, 2);
  if (options.workers !== undefined) checkInteger('workers', options.workers, 1);
  const backendName = await selectBackend(backend);
  const workers = options.workers ?? (backendName === 'wasm' ? availableParallelism() : 1);
  const modelOptions = { weightsFile, rotary_scaling_factor: rotaryScalingFactor };
  // Config and tokenizer first: their errors come before any weights are read.
  const config = readConfig(dir, modelOptions);
  const tokenizer = TextTokenizer.fromDir(dir, config.n_positions, maxLength);
  if (workers === 1) return new Embedder(new LocalRunner(loadModel(dir, modelOptions)), tokenizer, backendName, config);
  // Check the checkpoint's header here, so a bad file fails once with its own error type.
  const weightsPath = join(dir, weightsFile ?? 'model.safetensors');
  if (!existsSync(weightsPath)) throw new ModelFilesError(weightsPath, 'weights file not found');
  openCheckpoint(weightsPath, config).file.close();
  const runner = await WorkerPoolRunner.start(workers, { dir, backend: backendName, modelOptions });
  return new Embedder(runner, tokenizer, backendName, config);
}

/** Texts in, one vector per text out. Owns its model: call {@link dispose} when done. */
export class Embedder {
  private readonly processors = new Map<string, BatchProcessor>();

  constructor(
    /** Where batches run; tests may wrap its `run` to inject faults. */
    readonly runner: BatchRunner,
    readonly tokenizer: TextTokenizer,
    /** The backend this embedder runs on. */
    readonly backend: BackendName,
    readonly config: NomicBertConfig,
  ) {}

  /** The model, when it runs in this thread (`workers: 1`). */
  get model(): NomicBertModel {
    if (!(this.runner instanceof LocalRunner)) throw new NomicEmbedError('this embedder runs its model in worker threads');
    return this.runner.model;
  }

  /** Worker threads in use; 1 when the model runs in this thread. */
  get workers(): number {
    return this.runner.concurrency;
  }

  /** Embeds `texts`; the result keeps their order. See {@link EmbedOptions} for the defaults. */
  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<EmbedResult> {
    const settings = this.settings(texts, options);
    const stats = new StatsRecorder(this.backend, texts.length);
    const embeddings = new Array<Float32Array>(texts.length);
    let done = 0;
    for (let start = 0; start < texts.length; start += settings.chunkSize) {
      const chunk = texts.slice(start, start + settings.chunkSize);
      const tokenized = chunk.map((text, i) => settings.tokenize(text, start + i));
      stats.truncatedTexts += tokenized.filter((t) => t.truncatedTokens > 0).length;
      const lengths = tokenized.map((t) => t.ids.length);
      const processor = settings.processor;
      await processor.run(
        processor.plan(lengths, this.runner.concurrency),
        lengths,
        async (batch) => {
          const vectors = await this.runBatch(batch, tokenized, settings, stats);
          batch.indices.forEach((i, row) => (embeddings[start + i] = vectors[row]));
          done += vectors.length;
          options.onProgress?.(done, texts.length);
        },
        () => stats.retries++,
        { indexBase: start, concurrency: this.runner.concurrency },
      );
    }
    return { embeddings, dimensions: settings.output.dimensions, stats: stats.finish() };
  }

  private async runBatch(
    batch: Batch,
    tokenized: readonly TokenizedText[],
    settings: Settings,
    stats: StatsRecorder,
  ): Promise<Float32Array[]> {
    const sequences = batch.indices.map((i) => tokenized[i].ids);
    const B = sequences.length;
    const T = batch.length;
    const perHead = this.backend === 'wasm';
    const queryBlock = queryBlockFor(this.config, B, T, settings.memoryBudgetBytes, perHead);
    const { vectors, measuredPeakBytes } = await this.runner.run({ sequences, length: T, queryBlock, perHead, output: settings.output });
    const dims = settings.output.dimensions;
    const tokens = sequences.reduce((sum, s) => sum + s.length, 0);
    stats.batchDone(tokens, B * T, estimateMemory(this.config, B, T, { queryBlock, perHead }).totalBytes, measuredPeakBytes);
    return sequences.map((_, row) => vectors.slice(row * dims, (row + 1) * dims));
  }

  /** Validates the call and resolves every default once, before any work. */
  private settings(texts: readonly string[], options: EmbedOptions): Settings {
    if (!Array.isArray(texts)) throw new InputError('texts', `must be an array of strings, got ${describe(texts)}`);
    texts.forEach((text, i) => {
      if (typeof text !== 'string') throw new InputError('texts', `must be a string, got ${describe(text)}`, i);
    });
    checkOptionNames('embed options', options, EMBED_OPTION_NAMES);
    const D = this.config.n_embd;
    const {
      task,
      dimensions,
      normalize = true,
      pooling = 'mean',
      truncation = 'truncate',
      maxBatchTokens = 8192,
      maxBatchSize = 64,
      memoryBudgetBytes = defaultMemoryBudget(this.backend),
      chunkSize = 4096,
    } = options;
    if (task !== undefined && !(task in TASK_PREFIXES)) {
      throw new InputError('task', `unknown task ${describe(task)}; use one of ${Object.keys(TASK_PREFIXES).join(', ')}`);
    }
    if (pooling !== 'mean' && pooling !== 'cls') throw new InputError('pooling', `must be 'mean' or 'cls', got ${describe(pooling)}`);
    if (truncation !== 'truncate' && truncation !== 'error') {
      throw new InputError('truncation', `must be 'truncate' or 'error', got ${describe(truncation)}`);
    }
    if (typeof normalize !== 'boolean') throw new InputError('normalize', `must be a boolean, got ${describe(normalize)}`);
    if (dimensions !== undefined) this.checkDimensions(dimensions);
    checkInteger('maxBatchTokens', maxBatchTokens, 1);
    checkInteger('maxBatchSize', maxBatchSize, 1);
    checkInteger('chunkSize', chunkSize, 1);
    if (typeof memoryBudgetBytes !== 'number' || !(memoryBudgetBytes > 0)) {
      throw new InputError('memoryBudgetBytes', `must be a positive number, got ${describe(memoryBudgetBytes)}`);
    }
    const limits = { maxBatchTokens, maxBatchSize, memoryBudgetBytes };
    const key = JSON.stringify(limits);
    if (!this.processors.has(key)) {
      const perHead = this.backend === 'wasm';
      const estimate = (b: number, l: number) => estimateMemory(this.config, b, l, { perHead }).totalBytes;
      this.processors.set(key, new BatchProcessor(limits, estimate));
    }
    return {
      chunkSize,
      memoryBudgetBytes,
      output: { pooling, dimensions: dimensions ?? D, matryoshka: dimensions !== undefined, normalize },
      processor: this.processors.get(key)!,
      tokenize: (text, index) => this.tokenizer.encode(text, task, truncation, index),
    };
  }

  private checkDimensions(dimensions: number): void {
    const D = this.config.n_embd;
    const nomicV15 = D === NOMIC_V15_DIMENSIONS[0];
    const allowed = nomicV15
      ? (NOMIC_V15_DIMENSIONS as readonly number[]).includes(dimensions)
      : Number.isInteger(dimensions) && dimensions >= 1 && dimensions <= D;
    if (!allowed) {
      throw new InputError(
        'dimensions',
        `${describe(dimensions)} is not available; use ${nomicV15 ? NOMIC_V15_DIMENSIONS.join(', ') : `an integer from 1 to ${D}`}`,
      );
    }
  }

  /** Frees the model and ends any worker threads; safe to call twice. */
  dispose(): Promise<void> {
    return this.runner.dispose();
  }
}

interface Settings {
  readonly chunkSize: number;
  readonly memoryBudgetBytes: number;
  readonly output: OutputSpec;
  readonly processor: BatchProcessor;
  readonly tokenize: (text: string, index: number) => TokenizedText;
}

const GiB = 1024 ** 3;

function defaultMemoryBudget(backend: BackendName): number {
  return backend === 'wasm' ? 3 * GiB : Math.min(totalmem() / 2, 8 * GiB);
}

function checkOptionNames(what: string, options: object, known: readonly string[]): void {
  if (options === null || typeof options !== 'object') throw new InputError(what, `must be an object, got ${describe(options)}`);
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new InputError(what, `unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; known: ${known.join(', ')}`);
  }
}

function checkInteger(name: string, value: unknown, min: number): void {
  if (!Number.isSafeInteger(value) || (value as number) < min) {
    throw new InputError(name, `must be an integer of at least ${min}, got ${describe(value)}`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}
