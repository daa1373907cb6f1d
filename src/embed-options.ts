import type { BackendChoice } from './backends/select.js';
import type { Pooling } from './pipeline/pooling.js';
import type { EmbedStats } from './pipeline/stats.js';
import type { Task, Truncation } from './pipeline/tokenizer.js';

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

export const EMBED_OPTION_NAMES: readonly (keyof EmbedOptions)[] = [
  'task', 'dimensions', 'normalize', 'pooling', 'truncation', 'maxBatchTokens',
  'maxBatchSize', 'memoryBudgetBytes', 'chunkSize', 'onProgress',
];
export const LOAD_OPTION_NAMES: readonly (keyof LoadEmbedderOptions)[] = [
  'backend', 'maxLength', 'rotaryScalingFactor', 'weightsFile', 'workers',
];
