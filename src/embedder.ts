import * as tf from '@tensorflow/tfjs-core';
import { totalmem } from 'node:os';
import { selectBackend, type BackendChoice, type BackendName } from './backends/select.js';
import { InputError } from './errors.js';
import { loadModel } from './model/load-model.js';
import { takePeakMemory } from './model/memory-watermark.js';
import type { NomicBertModel } from './model/nomic-bert.js';
import { BatchProcessor, type Batch } from './pipeline/batcher.js';
import { matryoshka } from './pipeline/matryoshka.js';
import { estimateMemory, queryBlockFor } from './pipeline/memory.js';
import { l2Normalize } from './pipeline/normalize.js';
import { pool, type Pooling } from './pipeline/pooling.js';
import { StatsRecorder, type EmbedStats } from './pipeline/stats.js';
import { toEncoderInputs } from './pipeline/tensors.js';
import { TASK_PREFIXES, TextTokenizer, type Task, type TokenizedText, type Truncation } from './pipeline/tokenizer.js';
import { checkShape } from './pipeline/validate.js';
import type { NomicBertConfig } from './weights/config.js';

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
  'backend', 'maxLength', 'rotaryScalingFactor', 'weightsFile',
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
  const backendName = await selectBackend(backend);
  const model = loadModel(dir, { weightsFile, rotary_scaling_factor: rotaryScalingFactor });
  try {
    const tokenizer = TextTokenizer.fromDir(dir, model.config.n_positions, maxLength);
    return new Embedder(model, tokenizer, backendName);
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** Texts in, one vector per text out. Owns its model: call {@link dispose} when done. */
export class Embedder {
  private readonly processors = new Map<string, BatchProcessor>();

  constructor(
    readonly model: NomicBertModel,
    readonly tokenizer: TextTokenizer,
    /** The backend this embedder runs on. */
    readonly backend: BackendName,
  ) {}

  get config(): NomicBertConfig {
    return this.model.config;
  }

  /** Embeds `texts`; the result keeps their order. See {@link EmbedOptions} for the defaults. */
  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<EmbedResult> {
    const settings = this.settings(texts, options);
    const stats = new StatsRecorder(tf.getBackend(), texts.length);
    const embeddings = new Array<Float32Array>(texts.length);
    let done = 0;
    for (let start = 0; start < texts.length; start += settings.chunkSize) {
      const chunk = texts.slice(start, start + settings.chunkSize);
      const tokenized = chunk.map((text, i) => settings.tokenize(text, start + i));
      stats.truncatedTexts += tokenized.filter((t) => t.truncatedTokens > 0).length;
      const lengths = tokenized.map((t) => t.ids.length);
      const processor = settings.processor;
      await processor.run(
        processor.plan(lengths),
        lengths,
        async (batch) => {
          const vectors = await this.runBatch(batch, tokenized, settings, stats);
          batch.indices.forEach((i, row) => (embeddings[start + i] = vectors[row]));
          done += vectors.length;
          options.onProgress?.(done, texts.length);
        },
        () => stats.retries++,
        start,
      );
    }
    return { embeddings, dimensions: settings.dimensions, stats: stats.finish() };
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
    const D = this.config.n_embd;
    const perHead = this.backend === 'wasm';
    const queryBlock = queryBlockFor(this.config, B, T, settings.memoryBudgetBytes, perHead);
    takePeakMemory();
    const output = tf.tidy(() => {
      const inputs = toEncoderInputs(sequences);
      checkShape('tensor conversion: input_ids', inputs.inputIds.shape, [B, T]);
      checkShape('tensor conversion: attention_mask', inputs.attentionMask.shape, [B, T]);
      const hidden = this.model.forward(inputs, { queryBlock, perHeadAttention: perHead });
      checkShape('transformer: last_hidden_state', hidden.shape, [B, T, D]);
      const pooled = pool(hidden, inputs.attentionMask, settings.pooling);
      checkShape('pooling', pooled.shape, [B, D]);
      const result = settings.finish(pooled);
      checkShape('output', result.shape, [B, settings.dimensions]);
      return result;
    });
    const measured = takePeakMemory();
    try {
      const flat = (await output.data()) as Float32Array;
      const dims = settings.dimensions;
      const tokens = sequences.reduce((sum, s) => sum + s.length, 0);
      stats.batchDone(tokens, B * T, estimateMemory(this.config, B, T, { queryBlock, perHead }).totalBytes, measured);
      return sequences.map((_, row) => flat.slice(row * dims, (row + 1) * dims));
    } finally {
      output.dispose();
    }
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
    const outDims = dimensions ?? D;
    return {
      chunkSize,
      pooling,
      dimensions: outDims,
      memoryBudgetBytes,
      processor: this.processors.get(key)!,
      tokenize: (text, index) => this.tokenizer.encode(text, task, truncation, index),
      finish: (pooled) => {
        if (!normalize) return outDims === D ? tf.clone(pooled) : tf.slice(pooled, [0, 0], [-1, outDims]);
        return dimensions === undefined ? l2Normalize(pooled) : matryoshka(pooled, dimensions);
      },
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

  /** Frees the model; safe to call twice. */
  dispose(): void {
    this.model.dispose();
  }
}

interface Settings {
  readonly chunkSize: number;
  readonly pooling: Pooling;
  readonly dimensions: number;
  readonly memoryBudgetBytes: number;
  readonly processor: BatchProcessor;
  readonly tokenize: (text: string, index: number) => TokenizedText;
  /** Pooled [B, D] to the output vectors [B, dimensions]. */
  readonly finish: (pooled: tf.Tensor2D) => tf.Tensor2D;
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
