import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ModelFilesError, SafetensorsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import { CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, openCheckpoint, runtimeTensors, type CheckedCheckpoint } from './load.js';
import { CONFIG_FILE, DEFAULT_WEIGHTS_FILE, readConfig, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, weightsPath } from './model-folder.js';
import { writeSafetensorsStream, type FloatDtype } from './safetensors.js';
import { weightTable } from './weight-table.js';

export type ConvertDtype = 'float32' | 'float16';

export interface ConvertOptions {
  /** Storage type of the converted weights; float16 halves the file. @default 'float32' */
  readonly dtype?: ConvertDtype;
  /** Recorded as `source` in the file's metadata. @default the source folder's name */
  readonly source?: string;
  /** Called after each tensor with the number written and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** Tokenizer and config files copied next to the converted weights when present. */
const COMPANION_FILES = [CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, 'special_tokens_map.json', 'vocab.txt'];

const LARGEST_F16 = 65504;

/**
 * Converts a Hugging Face checkpoint folder into the runtime layout: matrices
 * pre-transposed, q/k/v split, stored as float32 or float16, with format
 * version, source and dtype in `__metadata__`. The folder it writes loads
 * like any model folder.
 */
export function convertWeights(sourceDir: string, outDir: string, options: ConvertOptions = {}): { path: string; tensors: number } {
  const { dtype = 'float32', source = basename(resolve(sourceDir)), onProgress } = options;
  if (dtype !== 'float32' && dtype !== 'float16') {
    throw new ModelFilesError(sourceDir, `unknown dtype ${JSON.stringify(dtype)}; use float32 or float16`);
  }
  if (resolve(sourceDir) === resolve(outDir)) throw new ModelFilesError(outDir, 'the output folder must differ from the source');
  const config = readConfig(sourceDir);
  const checkpoint = openCheckpoint(weightsPath(sourceDir), config);
  const storage: FloatDtype = dtype === 'float16' ? 'F16' : 'F32';
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
  storage: FloatDtype,
  metadata: Readonly<Record<string, string>>,
  onProgress?: (done: number, total: number) => void,
): number {
  const specs = [...weightTable(config, 'runtime', checkpoint.ffnWidth)].map(([name, shape]) => ({ name, shape, dtype: storage }));
  const partial = `${target}.${process.pid}.partial`;
  let done = 0;
  function* checked() {
    for (const tensor of runtimeTensors(checkpoint, config)) {
      if (storage === 'F16') {
        const overflow = tensor.data.findIndex((x) => Math.abs(x) > LARGEST_F16);
        if (overflow >= 0) {
          throw new SafetensorsError(
            checkpoint.file.path,
            `value ${tensor.data[overflow]} at flat index ${overflow} does not fit in float16; convert to float32`,
            tensor.source ?? tensor.name,
          );
        }
      }
      yield tensor.data;
      onProgress?.(++done, specs.length);
    }
  }
  try {
    writeSafetensorsStream(partial, specs, checked(), {
      ...metadata,
      format: CONVERTED_FORMAT,
      format_version: CONVERTED_FORMAT_VERSION,
      dtype: storage,
    });
    renameSync(partial, target);
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
  return specs.length;
}
