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

/**
 * Yields the model's tensors in the runtime layout, one at a time, so a caller
 * that uploads each to the backend never holds the whole checkpoint in JS memory.
 * Every value is checked to be finite.
 */
export function* runtimeTensors(checkpoint: CheckedCheckpoint, config: NomicBertConfig): Generator<NamedTensor> {
  const { file, layout, ffnWidth } = checkpoint;
  const read = (name: string): Float32Array => {
    const data = file.readFloat32(name);
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new NonFiniteWeightError(file.path, name, bad, data[bad]);
    return data;
  };
  const runtimeTable = weightTable(config, 'runtime', ffnWidth);
  if (layout === 'runtime') {
    for (const [name, shape] of runtimeTable) yield { name, shape, data: read(name) };
    return;
  }
  for (const [name, recipe] of hfToRuntimeRecipes(config.n_layer)) {
    const sources = recipe.sources.map(read);
    const shapes = recipe.sources.map((s) => file.tensors.get(s)!.shape);
    yield { name, source: recipe.sources.join(' + '), shape: runtimeTable.get(name)!, data: recipe.build(sources, shapes) };
  }
}
