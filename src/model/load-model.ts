import type { ConfigOverrides } from '../weights/config.js';
import { openCheckpoint, runtimeTensors } from '../weights/load.js';
import { readConfig, weightsPath } from '../weights/model-folder.js';
import { NomicBertModel } from './nomic-bert.js';

export interface LoadModelOptions extends ConfigOverrides {
  /** Weights file inside the folder. @default 'model.safetensors' */
  readonly weightsFile?: string;
}

/**
 * Loads a model folder (`config.json` + `model.safetensors`, Hugging Face or
 * converted layout) onto the active tfjs backend.
 */
export function loadModel(dir: string, options: LoadModelOptions = {}): NomicBertModel {
  const config = readConfig(dir, options);
  const checkpoint = openCheckpoint(weightsPath(dir, options.weightsFile), config);
  try {
    return NomicBertModel.fromTensors(config, runtimeTensors(checkpoint, config));
  } finally {
    checkpoint.file.close();
  }
}
