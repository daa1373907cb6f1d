import { NonFiniteWeightError, SafetensorsError, WeightsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import { hfToRuntimeRecipes, type NamedTensor } from './layout.js';
import { dequantizeWeight } from './q8-codes.js';
import { SafetensorsFile } from './safetensors.js';
import { ffnWidthOf, projectionNames, q8ScalesName, q8Table, runtimeNames, weightTable, type WeightLayout, type WeightTable } from './weight-table.js';

/** `__metadata__.format` of files written by the converter. */
export const CONVERTED_FORMAT = 'nomic-embed-tfjs';
/** Bumped whenever the runtime layout changes; older converted files are refused. */
export const CONVERTED_FORMAT_VERSION = '1';
/** `__metadata__.dtype` of a converted file whose projections are q8 codes (see `q8Table`). */
export const Q8_CHECKPOINT_DTYPE = 'q8';

export interface CheckedCheckpoint {
  readonly file: SafetensorsFile;
  readonly layout: WeightLayout;
  readonly ffnWidth: number;
  /** The projections are stored as q8 codes and scales (a converted file of dtype q8). */
  readonly quantized: boolean;
}

/** Checks a checkpoint already open (a file, or bytes in memory; `openCheckpoint` opens a file) (bytes in memory, say); closes it when it fails the checks. */
export function checkCheckpoint(file: SafetensorsFile, config: NomicBertConfig): CheckedCheckpoint {
  const { path } = file;
  try {
    const layout = detectLayout(file);
    const quantized = layout === 'runtime' && file.metadata.dtype === Q8_CHECKPOINT_DTYPE;
    const shapeOf = (name: string) => file.tensors.get(name)?.shape;
    const ffnWidth = (quantized ? q8FfnWidth(shapeOf) : ffnWidthOf(layout, shapeOf)) ?? config.ffnWidth;
    const table = weightTable(config, layout, ffnWidth);
    if (!quantized) checkAgainstTable(path, file, table);
    else {
      const projections = projectionNames(config.n_layer);
      checkAgainstTable(path, file, q8Table(table, projections));
      checkQ8Dtypes(file, projections);
    }
    return { file, layout, ffnWidth, quantized };
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

/** A q8 checkpoint's down projection is stored as [N/8, K/2, 16] codes, K the SwiGLU width. */
function q8FfnWidth(shapeOf: (name: string) => readonly number[] | undefined): number | undefined {
  const codes = shapeOf(runtimeNames.layer(0).down);
  return codes === undefined ? undefined : codes[1] * 2;
}

/** Codes must be int8 and scales float32 before any is read: a file of other types was not written by the converter. */
function checkQ8Dtypes(file: SafetensorsFile, projections: ReadonlySet<string>): void {
  for (const name of projections) {
    for (const [tensor, dtype] of [[name, 'I8'], [q8ScalesName(name), 'F32']] as const) {
      const actual = file.tensors.get(tensor)!.dtype;
      if (actual !== dtype) throw new SafetensorsError(file.path, `a q8 checkpoint stores this tensor as ${dtype}, not ${actual}`, tensor);
    }
  }
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
  /**
   * Present for a projection of a q8 checkpoint, whose codes a q8 backend
   * takes as they are; `readInto` gives their float32 values (`code · scale`)
   * to any other.
   */
  readonly q8?: Q8TensorSource;
}

/** A projection stored as q8 codes in the kernels' packed layout, with its column scales. */
export interface Q8TensorSource {
  /** Reads the packed codes (K · N bytes) into `target`. */
  readCodesInto(target: Int8Array): void;
  /** The column scales, each checked to be finite and not negative. */
  readScales(): Float32Array;
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
  const projections = checkpoint.quantized ? projectionNames(config.n_layer) : new Set<string>();
  if (layout === 'runtime') {
    for (const [name, shape] of runtimeTable) {
      if (projections.has(name)) {
        yield q8Source(file, name, shape);
        continue;
      }
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

/** A q8 checkpoint's projection: its codes for a q8 backend, `code · scale` for any other. */
function q8Source(file: SafetensorsFile, name: string, shape: readonly number[]): TensorSource {
  const [K, N] = shape;
  const scalesName = q8ScalesName(name);
  const q8: Q8TensorSource = {
    readCodesInto: (target) => file.readInt8Into(name, target),
    readScales: () => {
      const scales = file.readFloat32(scalesName);
      const bad = scales.findIndex((x) => !(x >= 0) || x === Infinity);
      if (bad >= 0) {
        if (Number.isFinite(scales[bad])) throw new SafetensorsError(file.path, `scale ${scales[bad]} of column ${bad} is negative`, scalesName);
        throw new NonFiniteWeightError(file.path, scalesName, bad, scales[bad]);
      }
      return scales;
    },
  };
  const readInto = (target: Float32Array) => {
    const codes = new Int8Array(K * N);
    q8.readCodesInto(codes);
    dequantizeWeight({ codes, scales: q8.readScales() }, K, N, target);
  };
  return {
    name,
    source: `${name} + ${scalesName}`,
    shape,
    readInto,
    readIntoAsync: async (target) => readInto(target),
    // Finite codes times finite scales are finite: the scales were checked as they were read.
    checkFinite: () => {},
    q8,
  };
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

/** A backend's quicker search, for the arrays it can read (undefined for others); see {@link useQuickFiniteScan}. */
type FiniteScan = (data: Float32Array) => number | undefined;
let quickScan: FiniteScan | undefined;

/**
 * Has {@link firstNonFinite} ask `scan` first: the wasm backend's SIMD search
 * of its own heap, where the weights are read (4 ms over the real model's 23M
 * word embeddings in memory, against 38 for the loop below; just after they
 * are read, the first touch of their memory costs both about 120 ms more).
 */
export function useQuickFiniteScan(scan: FiniteScan): void {
  quickScan = scan;
}

/** Index of the first NaN or infinity, or -1. A plain loop: `findIndex` with a callback is 8× slower on 136M weights. */
export function firstNonFinite(data: Float32Array): number {
  const quick = quickScan?.(data);
  if (quick !== undefined) return quick;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    // x − x is 0 for every finite x, NaN for NaN and ±∞.
    if (x - x !== 0) return i;
  }
  return -1;
}
