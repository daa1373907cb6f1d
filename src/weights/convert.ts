import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ModelFilesError, SafetensorsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import { CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, Q8_CHECKPOINT_DTYPE, runtimeTensors, type CheckedCheckpoint } from './load.js';
import { CONFIG_FILE, DEFAULT_WEIGHTS_FILE, openCheckpoint, readConfig, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, weightsPath } from './model-folder.js';
import { quantizeWeight } from './q8-codes.js';
import { type FloatDtype, type TensorSpec } from './safetensors.js';
import { writeSafetensorsStream } from './safetensors-file.js';
import { projectionNames, q8Table, weightTable } from './weight-table.js';

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

const LARGEST_F16 = 65504;

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

/** Every tensor as one float type, or the projections as q8 codes and scales and the rest as float32. */
export type RuntimeStorage = FloatDtype | typeof Q8_CHECKPOINT_DTYPE;

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
  const table = weightTable(config, 'runtime', checkpoint.ffnWidth);
  const projections = storage === Q8_CHECKPOINT_DTYPE ? projectionNames(config.n_layer) : new Set<string>();
  const specs: TensorSpec[] = [...q8Table(table, projections)].map(([name, shape]) => ({
    name,
    shape,
    dtype: storage !== Q8_CHECKPOINT_DTYPE ? storage : projections.has(name) ? 'I8' : 'F32',
  }));
  const partial = `${target}.${process.pid}.partial`;
  let done = 0;
  function* checked() {
    for (const tensor of runtimeTensors(checkpoint, config)) {
      if (projections.has(tensor.name)) {
        const [K, N] = tensor.shape;
        const { codes, scales } = quantizeWeight(tensor.data, K, N);
        yield codes;
        onProgress?.(++done, table.size);
        yield scales;
        continue;
      }
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
      onProgress?.(++done, table.size);
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
  return table.size;
}
