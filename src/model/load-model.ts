import type { ConfigOverrides } from '../weights/config.js';
import { runtimeLayoutFile } from '../weights/layout-cache.js';
import { runtimeTensorSources } from '../weights/load.js';
import { openCheckpoint, readConfig, weightsPath } from '../weights/model-folder.js';
import { modelFromSources, modelFromSourcesConcurrently, type SlotAllocator, type TensorAllocator, type WeightPacker } from './build-model.js';
import type { NomicBertModel } from './nomic-bert.js';
import type { Dtype } from './projection.js';

export interface LoadModelOptions extends ConfigOverrides {
  /** Weights file inside the folder. @default 'model.safetensors' */
  readonly weightsFile?: string;
  /**
   * Load a large Hugging Face checkpoint from its runtime-layout copy, made
   * next to it on first use (see `runtimeLayoutFile`). @default true
   */
  readonly layoutCache?: boolean;
  /**
   * The projections' precision: as the checkpoint gives them, in float32, or
   * as int8 codes with a scale per output column, quantized as they load. The
   * backend's `loadModel` chooses the packer that makes them. @default 'fp32'
   */
  readonly dtype?: Dtype;
}

/**
 * Loads a model folder (`config.json` + `model.safetensors`, Hugging Face or
 * converted layout) onto the active tfjs backend; `allocate` makes each weight,
 * `packer` the projections (see `loadModelOnBackend` of the backends for the
 * fastest per backend).
 */
export function loadModel(dir: string, options: LoadModelOptions = {}, allocate?: TensorAllocator, packer?: WeightPacker): NomicBertModel {
  const { config, checkpoint } = openModelCheckpoint(dir, options);
  try {
    return modelFromSources(config, runtimeTensorSources(checkpoint, config), allocate, packer);
  } finally {
    checkpoint.file.close();
  }
}

/**
 * As {@link loadModel}, reading the weights on Node's I/O threads while this
 * thread checks those already read and has `packer` make the projections
 * (see `modelFromSourcesConcurrently`): for backends whose weight
 * memory does not move while others are made.
 */
export async function loadModelConcurrently(
  dir: string,
  options: LoadModelOptions,
  allocate: SlotAllocator,
  packer?: WeightPacker,
): Promise<NomicBertModel> {
  const { config, checkpoint } = openModelCheckpoint(dir, options);
  try {
    return await modelFromSourcesConcurrently(config, runtimeTensorSources(checkpoint, config), allocate, packer);
  } finally {
    checkpoint.file.close();
  }
}

function openModelCheckpoint(dir: string, options: LoadModelOptions) {
  const config = readConfig(dir, options);
  const path = weightsPath(dir, options.weightsFile);
  return { config, checkpoint: openCheckpoint(options.layoutCache === false ? path : runtimeLayoutFile(path, config, layoutNotice), config) };
}

/** Said once per conversion, on stderr, as a process warning (the library prints nothing else). */
export function layoutNotice(message: string): void {
  process.emitWarning(message, { code: 'NOMIC_EMBED_LAYOUT_CACHE' });
}
