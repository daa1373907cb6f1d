import type { BackendChoice, BackendName } from '../backends/select.js';
import { InputError } from '../errors.js';
import { checkChoice, checkInteger, checkOptionNames, describe } from '../options.js';
import { DTYPES, type Dtype } from '../model/projection.js';
import type { OutputSpec } from './finish-vector.js';
import { POOLINGS, type Pooling } from './pooling.js';
import { PRECISIONS, type Precision, type QuantizationRanges } from './quantize.js';
import { LONG_TEXT_MODES, TASKS, TRUNCATIONS, type LongText, type Task, type Truncation } from './tokenizer.js';
import type { BatchLimits } from './batcher.js';
import type { EmbedStats } from './stats.js';

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
   * Convert a Hugging Face checkpoint of 64 MiB or more to the runtime layout
   * once, as `<name>.runtime.safetensors` next to it, and load that copy
   * afterwards: later loads then skip 0.9 s of transposes (real model).
   * Nothing is written where the folder is read-only. @default true
   */
  readonly layoutCache?: boolean;
  /**
   * Worker threads, each with its own backend and copy of the model; 1 runs
   * the model in this thread. On wasm they are the fallback for where the
   * threaded build cannot start, and they combine with threads (`workers ×
   * threads`).
   * @default 1; on wasm without threads, the cores, as far as memory holds a model per worker
   */
  readonly workers?: number;
  /**
   * Threads of the wasm backend's threaded build: one heap, one copy of the
   * weights, and every matrix product split over the threads. tfjs has one
   * wasm backend per process, so the first wasm start in a process decides it.
   * @default the cores, divided among the workers
   */
  readonly threads?: number;
  /**
   * Precision of the matrix products' weights: `fp32` as the checkpoint
   * gives them, or `q8`, int8 codes with one scale per output column
   * (quantized as the model loads) times activations quantized per row, with
   * int32 sums: a quarter of the projections' memory and faster products, at
   * a cost in fidelity the README states. q8 runs on wasm and cpu.
   * @default 'fp32'
   */
  readonly dtype?: Dtype;
  /**
   * With a hub repository id for a model: its branch, tag or commit.
   * @default 'main'
   */
  readonly revision?: string;
  /**
   * With a hub repository id: never download; a model not yet in the cache is
   * an error that names what is missing.
   * @default true when the environment sets HF_HUB_OFFLINE=1
   */
  readonly offline?: boolean;
  /**
   * With a hub repository id: where downloaded models are kept, one folder per
   * repository and revision.
   * @default NOMIC_EMBED_CACHE, else ~/.cache/nomic-embed
   */
  readonly cacheDir?: string;
  /** With a hub repository id: the hub, or a mirror of it. @default HF_ENDPOINT, else https://huggingface.co */
  readonly endpoint?: string;
  /** With a hub repository id: an access token for gated or private models. @default HF_TOKEN */
  readonly token?: string;
  /** With a hub repository id, while its first use downloads it: bytes of each file so far. */
  readonly onProgress?: (file: string, loadedBytes: number, totalBytes: number | undefined) => void;
}

export interface EmbedOptions<P extends Precision = 'float32'> {
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
  /**
   * A text longer than `maxLength`: `truncate` keeps its opening (see
   * `truncation`); `mean` splits it into windows of at most `maxLength`
   * tokens (each with the task prefix, [CLS] and [SEP]), embeds every window in
   * the same batches as other texts, and returns the token-weighted mean of
   * the windows' pooled vectors, then Matryoshka and normalisation as usual
   * (Nomic's `long_text_mode="mean"`). @default 'truncate'
   */
  readonly longText?: LongText;
  /** With `longText: 'mean'`, tokens each window shares with the one before. @default 0 */
  readonly overlap?: number;
  /**
   * `float32`, or quantized as sentence-transformers' `quantize_embeddings`:
   * `int8`/`uint8` (one byte per dimension, over `ranges`), `binary`/`ubinary`
   * (one bit per dimension, 8 per byte, most significant first; `binary` is
   * the byte minus 128). @default 'float32'
   */
  readonly precision?: P;
  /** int8/uint8: the range of each dimension, `min[i]` to `max[i]`; values beyond are clipped. */
  readonly ranges?: QuantizationRanges;
  /**
   * int8/uint8 without `ranges`: texts whose embeddings (with the same
   * options) give each dimension's range. Without either, normalised vectors
   * use ±4/√dimensions, which holds nearly every component of a unit vector.
   */
  readonly calibration?: readonly string[];
  /**
   * Most padded tokens (texts × longest length) in one batch.
   * @default 2048 on wasm (whose heap keeps the largest batch's memory), else 8192
   */
  readonly maxBatchTokens?: number;
  /** Most texts in one batch. @default 64 */
  readonly maxBatchSize?: number;
  /**
   * Tensor memory one batch may be predicted to use, weights included; long
   * inputs switch to blocked attention to stay under it.
   * @default 3 GiB on wasm (its heap tops out at 4 GiB), 4 GiB on webgpu (it reports no free memory), else half the machine's memory up to 8 GiB
   */
  readonly memoryBudgetBytes?: number;
  /** Texts tokenized and batched at a time, so huge inputs do not hold every token at once. @default 4096 */
  readonly chunkSize?: number;
  /** Called after each batch with the number of texts done so far and the total. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Withdraws the call: texts not yet in a batch are dropped and the call
   * rejects with a `CancelledError`. @default none
   */
  readonly signal?: AbortSignal;
  /**
   * Back-pressure: refuse the call at once (`QueueFullError`) when the
   * embedder's queue would then hold more than this many tokens, or
   * (`RequestTooLargeError`) when the call alone holds more. @default no limit
   */
  readonly maxQueueTokens?: number;
}

export interface EmbedResult<V extends Float32Array | Int8Array | Uint8Array = Float32Array> {
  /** One vector per input text, in input order: Float32Array, or Int8Array/Uint8Array when quantized. */
  readonly embeddings: V[];
  /** Dimensions of each vector; with `binary`/`ubinary`, `ceil(dimensions / 8)` bytes hold them, one bit each. */
  readonly dimensions: number;
  readonly precision: Precision;
  /** The ranges int8/uint8 used (given, calibrated or the unit-vector default), to quantize later texts alike. */
  readonly ranges?: QuantizationRanges;
  readonly stats: EmbedStats;
}

/** Every option's name, checked by the compiler against the interfaces: a new option cannot be forgotten here. */
export const EMBED_OPTION_NAMES = Object.keys({
  task: true, dimensions: true, normalize: true, pooling: true, truncation: true, longText: true, overlap: true,
  precision: true, ranges: true, calibration: true, maxBatchTokens: true, maxBatchSize: true, memoryBudgetBytes: true,
  chunkSize: true, onProgress: true, signal: true, maxQueueTokens: true,
} satisfies Record<keyof EmbedOptions, true>);
export const LOAD_OPTION_NAMES = Object.keys({
  backend: true, maxLength: true, rotaryScalingFactor: true, weightsFile: true, workers: true, threads: true, layoutCache: true, dtype: true,
  revision: true, offline: true, cacheDir: true, endpoint: true, token: true, onProgress: true,
} satisfies Record<keyof LoadEmbedderOptions, true>);

/**
 * The defaults of `embed` that do not depend on the backend or model, as
 * their TSDoc `@default` states them (a test compares the two).
 */
export const EMBED_DEFAULTS = {
  normalize: true,
  pooling: 'mean',
  truncation: 'truncate',
  longText: 'truncate',
  overlap: 0,
  precision: 'float32',
  maxBatchSize: 64,
  chunkSize: 4096,
} as const satisfies Partial<EmbedOptions<Precision>>;

/** The defaults of `loadEmbedder` that do not depend on the machine or model, as their TSDoc states them. */
export const LOAD_DEFAULTS = {
  backend: 'auto',
  weightsFile: 'model.safetensors',
  layoutCache: true,
  dtype: 'fp32',
} as const satisfies Partial<LoadEmbedderOptions>;

export const DEFAULT_MAX_BATCH_SIZE = EMBED_DEFAULTS.maxBatchSize;

/** Matryoshka sizes nomic-embed-text-v1.5 was trained for. */
export const NOMIC_V15_DIMENSIONS = [768, 512, 256, 128, 64] as const;

/** Checks `loadEmbedder`'s options; defaults that need the backend or model are resolved by the embedder. */
export function checkLoadOptions(options: LoadEmbedderOptions): void {
  checkOptionNames('loadEmbedder options', options, LOAD_OPTION_NAMES);
  if (options.maxLength !== undefined) checkInteger('maxLength', options.maxLength, 2);
  if (options.workers !== undefined) checkInteger('workers', options.workers, 1);
  if (options.threads !== undefined) checkInteger('threads', options.threads, 1);
  if (options.dtype !== undefined) checkChoice('dtype', options.dtype, DTYPES);
  if (options.layoutCache !== undefined && typeof options.layoutCache !== 'boolean') {
    throw new InputError('layoutCache', `must be a boolean, got ${describe(options.layoutCache)}`);
  }
  if (options.weightsFile !== undefined && typeof options.weightsFile !== 'string') {
    throw new InputError('weightsFile', `must be a file name, got ${describe(options.weightsFile)}`);
  }
  for (const name of ['revision', 'cacheDir', 'endpoint', 'token'] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw new InputError(name, `must be a non-empty string, got ${describe(value)}`);
  }
  if (options.offline !== undefined && typeof options.offline !== 'boolean') {
    throw new InputError('offline', `must be a boolean, got ${describe(options.offline)}`);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new InputError('onProgress', `must be a function, got ${describe(options.onProgress)}`);
  }
}

/** Every option of one `embed` call, checked and with its default. */
export interface ResolvedEmbedOptions {
  readonly task: Task | undefined;
  readonly truncation: Truncation;
  readonly longText: LongText;
  readonly overlap: number;
  readonly precision: Precision;
  readonly chunkSize: number;
  readonly limits: BatchLimits;
  readonly output: OutputSpec;
  readonly onProgress: ((done: number, total: number) => void) | undefined;
  readonly signal: AbortSignal | undefined;
  readonly maxQueueTokens: number | undefined;
}

/** What the defaults and checks of `embed` depend on. */
export interface EmbedderTraits {
  /** The model's hidden size: the full vector's length. */
  readonly hiddenSize: number;
  readonly backend: BackendName;
  readonly defaultMemoryBudgetBytes: number;
  readonly defaultMaxBatchTokens: number;
}

/**
 * Validates one `embed` call and resolves every default, before any work:
 * the only validator of embed options, whichever entry point (library, HTTP,
 * command line, queue worker) the call came through.
 */
export function resolveEmbedOptions(texts: readonly string[], options: EmbedOptions<Precision>, traits: EmbedderTraits): ResolvedEmbedOptions {
  if (!Array.isArray(texts)) throw new InputError('texts', `must be an array of strings, got ${describe(texts)}`);
  texts.forEach((text, i) => {
    if (typeof text !== 'string') throw new InputError('texts', `must be a string, got ${describe(text)}`, i);
  });
  checkOptionNames('embed options', options, EMBED_OPTION_NAMES);
  const {
    task,
    dimensions,
    normalize = EMBED_DEFAULTS.normalize,
    pooling = EMBED_DEFAULTS.pooling,
    truncation = EMBED_DEFAULTS.truncation,
    longText = EMBED_DEFAULTS.longText,
    overlap = EMBED_DEFAULTS.overlap,
    maxBatchTokens = traits.defaultMaxBatchTokens,
    maxBatchSize = EMBED_DEFAULTS.maxBatchSize,
    memoryBudgetBytes = traits.defaultMemoryBudgetBytes,
    chunkSize = EMBED_DEFAULTS.chunkSize,
    onProgress,
    signal,
    maxQueueTokens,
  } = options;
  if (task !== undefined) checkChoice('task', task, TASKS, 'unknown task');
  checkChoice('pooling', pooling, POOLINGS);
  checkChoice('truncation', truncation, TRUNCATIONS);
  checkChoice('longText', longText, LONG_TEXT_MODES);
  if (typeof normalize !== 'boolean') throw new InputError('normalize', `must be a boolean, got ${describe(normalize)}`);
  if (dimensions !== undefined) checkDimensions(dimensions, traits.hiddenSize);
  checkInteger('overlap', overlap, 0);
  checkInteger('maxBatchTokens', maxBatchTokens, 1);
  checkInteger('maxBatchSize', maxBatchSize, 1);
  checkInteger('chunkSize', chunkSize, 1);
  if (maxQueueTokens !== undefined) checkInteger('maxQueueTokens', maxQueueTokens, 1);
  if (typeof memoryBudgetBytes !== 'number' || !(memoryBudgetBytes > 0)) {
    throw new InputError('memoryBudgetBytes', `must be a positive number, got ${describe(memoryBudgetBytes)}`);
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new InputError('onProgress', `must be a function, got ${describe(onProgress)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InputError('signal', `must be an AbortSignal, got ${describe(signal)}`);
  const output: OutputSpec = { pooling, dimensions: dimensions ?? traits.hiddenSize, matryoshka: dimensions !== undefined, normalize };
  return {
    task,
    truncation,
    output,
    longText,
    overlap,
    precision: checkPrecision(options, output),
    chunkSize,
    limits: { maxBatchTokens, maxBatchSize, memoryBudgetBytes },
    onProgress,
    signal,
    maxQueueTokens,
  };
}

/**
 * Checks options meant for later `embed` calls before the model is loaded, as
 * {@link resolveEmbedOptions} will: everything but which Matryoshka sizes the
 * model has, which only its config says.
 */
export function checkEmbedOptionsAhead(options: EmbedOptions<Precision>): void {
  resolveEmbedOptions([], options, { hiddenSize: Number.MAX_SAFE_INTEGER, backend: 'cpu', defaultMemoryBudgetBytes: 1, defaultMaxBatchTokens: 1 });
}

function checkDimensions(dimensions: number, hiddenSize: number): void {
  const nomicV15 = hiddenSize === NOMIC_V15_DIMENSIONS[0];
  const allowed = nomicV15
    ? (NOMIC_V15_DIMENSIONS as readonly number[]).includes(dimensions)
    : Number.isInteger(dimensions) && dimensions >= 1 && dimensions <= hiddenSize;
  if (!allowed) {
    throw new InputError(
      'dimensions',
      `${describe(dimensions)} is not available; use ${nomicV15 ? NOMIC_V15_DIMENSIONS.join(', ') : `an integer from 1 to ${hiddenSize}`}`,
    );
  }
}

/** Checks `precision` and what int8/uint8 need: ranges of the right size, calibration texts, or normalised vectors. */
function checkPrecision(options: EmbedOptions<Precision>, output: OutputSpec): Precision {
  const { precision = EMBED_DEFAULTS.precision, ranges, calibration } = options;
  checkChoice('precision', precision, PRECISIONS, 'unknown precision');
  if (ranges !== undefined) {
    for (const end of ['min', 'max'] as const) {
      if (ranges[end]?.length !== output.dimensions) {
        throw new InputError(`ranges.${end}`, `must hold one value per dimension (${output.dimensions}), got ${describe(ranges[end])}`);
      }
    }
  }
  if (calibration !== undefined && (!Array.isArray(calibration) || calibration.length === 0 || calibration.some((t) => typeof t !== 'string'))) {
    throw new InputError('calibration', 'must be a non-empty array of texts');
  }
  if ((precision === 'int8' || precision === 'uint8') && ranges === undefined && calibration === undefined && !output.normalize) {
    throw new InputError('precision', `${precision} of vectors that are not normalised needs ranges or calibration texts`);
  }
  return precision;
}
