import { parseConfig, type ConfigOverrides } from '../weights/config.js';
import { checkCheckpoint, runtimeTensorSources } from '../weights/load.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { modelFromSources, type TensorAllocator, type WeightPacker } from './build-model.js';
import type { NomicBertModel } from './nomic-bert.js';

export interface LoadModelFromBytesOptions extends ConfigOverrides {
  /** What errors name for the weights: their URL, say. @default 'model.safetensors' */
  readonly label?: string;
}

/**
 * Loads a model from its files in memory (a parsed `config.json` and the
 * bytes of `model.safetensors`, Hugging Face or converted layout), for
 * runtimes that fetch rather than read them: the same checks as a folder, the
 * runtime layout made tensor by tensor in memory, no file system.
 */
export function loadModelFromBytes(
  config: unknown,
  weights: ArrayBuffer | ArrayBufferView,
  options: LoadModelFromBytesOptions = {},
  allocate?: TensorAllocator,
  packer?: WeightPacker,
): NomicBertModel {
  const { label = 'model.safetensors', ...overrides } = options;
  const parsed = parseConfig(config, overrides);
  const checkpoint = checkCheckpoint(SafetensorsFile.fromBytes(weights, label), parsed);
  try {
    return modelFromSources(parsed, runtimeTensorSources(checkpoint, parsed), allocate, packer);
  } finally {
    checkpoint.file.close();
  }
}
