import { NonFiniteWeightError, SafetensorsError, WeightsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import { hfToRuntimeRecipes, type NamedTensor } from './layout.js';
import { SafetensorsFile } from './safetensors.js';
import { ffnWidthOf, weightTable, type WeightLayout, type WeightTable } from './weight-table.js';

/** `__metadata__.format` of files written by the converter. */
export const CONVERTED_FORMAT = 'nomic-embed-tfjs';
/** Bumped whenever the runtime layout changes; older converted files are refused. */
export const CONVERTED_FORMAT_VERSION = '1';

export interface CheckedCheckpoint {
  readonly file: SafetensorsFile;
  readonly layout: WeightLayout;
  readonly ffnWidth: number;
}

/**
 * Opens a checkpoint (Hugging Face layout or converted) and checks, before any
 * data is read, that it holds exactly the tensors the config calls for.
 */
export function openCheckpoint(path: string, config: NomicBertConfig): CheckedCheckpoint {
  const file = SafetensorsFile.open(path);
  try {
    const layout = detectLayout(file);
    const shapeOf = (name: string) => file.tensors.get(name)?.shape;
    const ffnWidth = ffnWidthOf(layout, shapeOf) ?? config.ffnWidth;
    checkAgainstTable(path, file, weightTable(config, layout, ffnWidth));
    return { file, layout, ffnWidth };
  } catch (error) {
    file.close();
    throw error;
  }
}

function detectLayout(file: SafetensorsFile): WeightLayout {
  const { format, format_version: version } = file.metadata;
  if (format !== CONVERTED_FORMAT) return 'hf';
  if (version !== CONVERTED_FORMAT_VERSION) {
    throw new SafetensorsError(
      file.path,
      `converted with format version ${version}, this version reads ${CONVERTED_FORMAT_VERSION}; ` +
        `convert the original checkpoint again with \`npm run convert\``,
    );
  }
  return 'runtime';
}

function checkAgainstTable(path: string, file: SafetensorsFile, table: WeightTable): void {
  const missing = [...table.keys()].filter((name) => !file.tensors.has(name));
  const unexpected = [...file.tensors.keys()].filter((name) => !table.has(name));
  const misshaped = [...table]
    .filter(([name]) => file.tensors.has(name))
    .map(([name, expected]) => ({ name, expected, actual: file.tensors.get(name)!.shape }))
    .filter(({ expected, actual }) => expected.join() !== actual.join());
  if (missing.length + unexpected.length + misshaped.length > 0) {
    throw new WeightsError(path, missing, unexpected, misshaped);
  }
}

/** One runtime-layout tensor, read on demand into memory its consumer provides. */
export interface TensorSource {
  readonly name: string;
  /** The checkpoint tensor(s) it is made from, for messages. */
  readonly source: string;
  readonly shape: readonly number[];
  /** Fills `target` (as many values as the shape holds) and checks every value is finite. */
  readInto(target: Float32Array): void;
  /**
   * The same with the read on one of Node's I/O threads where the file holds
   * the tensor as it is (a converted float32 file); else as `readInto`. With
   * `checked` false the caller takes over the finiteness check (see
   * `checkFinite`) where the read allows it.
   */
  readIntoAsync(target: Float32Array, checked?: boolean): Promise<void>;
  /** Throws a `NonFiniteWeightError` naming the first NaN or infinity of this tensor's values, if any. */
  checkFinite(data: Float32Array): void;
}

/**
 * The model's tensors in the runtime layout, in table order. A converted
 * float32 file is read straight into the target (a view of backend memory,
 * for the wasm backend: no copy, no garbage); a Hugging Face checkpoint is
 * transposed and split on the way.
 */
export function* runtimeTensorSources(checkpoint: CheckedCheckpoint, config: NomicBertConfig): Generator<TensorSource> {
  const { file, layout, ffnWidth } = checkpoint;
  const check = (name: string, data: Float32Array) => {
    const bad = firstNonFinite(data);
    if (bad >= 0) throw new NonFiniteWeightError(file.path, name, bad, data[bad]);
    return data;
  };
  const runtimeTable = weightTable(config, 'runtime', ffnWidth);
  if (layout === 'runtime') {
    for (const [name, shape] of runtimeTable) {
      yield {
        name,
        source: name,
        shape,
        readInto: (target) => void check(name, (file.readFloat32Into(name, target), target)),
        readIntoAsync: async (target, checked = true) => {
          await file.readFloat32IntoAsync(name, target);
          if (checked) check(name, target);
        },
        checkFinite: (data) => void check(name, data),
      };
    }
    return;
  }
  for (const [name, recipe] of hfToRuntimeRecipes(config.n_layer)) {
    const readInto = (target: Float32Array) => {
      const sources = recipe.sources.map((s) => check(s, file.readFloat32(s)));
      target.set(recipe.build(sources, recipe.sources.map((s) => file.tensors.get(s)!.shape)));
    };
    // The sources are checked as they are read, before they are reshaped, so errors give their own indices.
    const checkFinite = (data: Float32Array) => void check(name, data);
    yield { name, source: recipe.sources.join(' + '), shape: runtimeTable.get(name)!, readInto, readIntoAsync: async (target) => readInto(target), checkFinite };
  }
}

/**
 * The same tensors, each in a fresh array, one at a time, so a caller never
 * holds the whole checkpoint in JS memory (the converter).
 */
export function* runtimeTensors(checkpoint: CheckedCheckpoint, config: NomicBertConfig): Generator<NamedTensor> {
  for (const { name, source, shape, readInto } of runtimeTensorSources(checkpoint, config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    readInto(data);
    yield { name, source, shape, data };
  }
}

/** Index of the first NaN or infinity, or -1. A plain loop: `findIndex` with a callback is 8× slower on 136M weights. */
export function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    // x − x is 0 for every finite x, NaN for NaN and ±∞.
    if (x - x !== 0) return i;
  }
  return -1;
}
