import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ModelFilesError, SafetensorsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import type { CheckedCheckpoint } from './load.js';
import { CONFIG_FILE, DEFAULT_WEIGHTS_FILE, openCheckpoint, readConfig, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, weightsPath } from './model-folder.js';
import { encodeRuntimeLayout, type RuntimeStorage } from './runtime-layout.js';
import { writeChunks } from './safetensors-file.js';

export type ConvertDtype = 'float32' | 'float16' | 'q8';

export const CONVERT_DTYPES: readonly ConvertDtype[] = ['float32', 'float16', 'q8'];

export interface ConvertOptions {
  /**
   * Storage type of the converted weights: float16 halves the file; q8 stores
   * the projections as int8 codes with a float32 scale per output column, as
   * `dtype: 'q8'` loads them with no quantization pass (other backends load
   * them as `code · scale`), and the rest in float32. @default 'float32'
   */
  readonly dtype?: ConvertDtype;
  /** Recorded as `source` in the file's metadata. @default the source folder's name */
  readonly source?: string;
  /** Called after each tensor with the number written and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** Tokenizer and config files copied next to the converted weights when present. */
const COMPANION_FILES = [CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, 'special_tokens_map.json', 'vocab.txt'];

/**
 * Converts a Hugging Face checkpoint folder into the runtime layout: matrices
 * pre-transposed, q/k/v split, stored as float32 or float16, with format
 * version, source and dtype in `__metadata__`. The folder it writes loads
 * like any model folder.
 */
export function convertWeights(sourceDir: string, outDir: string, options: ConvertOptions = {}): { path: string; tensors: number } {
  const { dtype = 'float32', source = basename(resolve(sourceDir)), onProgress } = options;
  if (!CONVERT_DTYPES.includes(dtype)) {
    throw new ModelFilesError(sourceDir, `unknown dtype ${JSON.stringify(dtype)}; use ${CONVERT_DTYPES.join(', ')}`);
  }
  if (resolve(sourceDir) === resolve(outDir)) throw new ModelFilesError(outDir, 'the output folder must differ from the source');
  const config = readConfig(sourceDir);
  const checkpoint = openCheckpoint(weightsPath(sourceDir), config);
  const storage: RuntimeStorage = dtype === 'float16' ? 'F16' : dtype === 'q8' ? 'q8' : 'F32';
  try {
    if (checkpoint.layout !== 'hf') {
      throw new SafetensorsError(checkpoint.file.path, 'already converted; convert the original Hugging Face checkpoint');
    }
    mkdirSync(outDir, { recursive: true });
    const target = join(outDir, DEFAULT_WEIGHTS_FILE);
    const tensors = writeRuntimeLayout(checkpoint, config, target, storage, { source }, onProgress);
    for (const file of COMPANION_FILES) {
      if (existsSync(join(sourceDir, file))) copyFileSync(join(sourceDir, file), join(outDir, file));
    }
    return { path: target, tensors };
  } finally {
    checkpoint.file.close();
  }
}

/**
 * Writes a checkpoint's tensors in the runtime layout, with the format
 * version, dtype and `metadata` in its `__metadata__`. The file is written
 * under a temporary name and renamed when complete, so an interrupted run
 * never leaves a plausible-looking file. Returns the number of tensors.
 */
export function writeRuntimeLayout(
  checkpoint: CheckedCheckpoint,
  config: NomicBertConfig,
  target: string,
  storage: RuntimeStorage,
  metadata: Readonly<Record<string, string>>,
  onProgress?: (done: number, total: number) => void,
): number {
  const partial = `${target}.${process.pid}.partial`;
  const encoded = encodeRuntimeLayout(checkpoint, config, storage, metadata, onProgress);
  try {
    writeChunks(partial, encoded);
    renameSync(partial, target);
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
  return encoded.tensors;
}
