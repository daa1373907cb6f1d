import { existsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { selectBackend, type BackendName } from './backends/select.js';
import { InputError, ModelFilesError, NomicEmbedError } from './errors.js';
import { loadModel, readConfig } from './model/load-model.js';
import type { NomicBertModel } from './model/nomic-bert.js';
import type { OutputSpec } from './pipeline/batch-job.js';
import { BatchProcessor, type Batch } from './pipeline/batcher.js';
import { estimateMemory, queryBlockFor } from './pipeline/memory.js';
import { StatsRecorder } from './pipeline/stats.js';
import { TASK_PREFIXES, TextTokenizer, type TokenizedText } from './pipeline/tokenizer.js';
import { LocalRunner } from './pool/local-runner.js';
import type { BatchRunner } from './pool/runner.js';
import { WorkerPoolRunner } from './pool/worker-pool.js';
import {
  EMBED_OPTION_NAMES,
  LOAD_OPTION_NAMES,
  type EmbedOptions,
  type EmbedResult,
  type LoadEmbedderOptions,
} from './embed-options.js';
import { checkInteger, checkOptionNames, describe } from './options.js';
import type { NomicBertConfig } from './weights/config.js';
import { openCheckpoint } from './weights/load.js';

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
