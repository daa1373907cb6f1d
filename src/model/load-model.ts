import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFilesError } from '../errors.js';
import { parseConfig, type ConfigOverrides, type NomicBertConfig } from '../weights/config.js';
import { openCheckpoint, runtimeTensors } from '../weights/load.js';
import { NomicBertModel } from './nomic-bert.js';

export interface LoadModelOptions extends ConfigOverrides {
  /** Weights file inside the folder. @default 'model.safetensors' */
  readonly weightsFile?: string;
}

/** Reads and parses `config.json` of a model folder. */
export function readConfig(dir: string, overrides: ConfigOverrides = {}): NomicBertConfig {
  return parseConfig(readJson(join(dir, 'config.json')), overrides);
}

/** Reads a JSON file, turning a missing or malformed file into a {@link ModelFilesError}. */
export function readJson(path: string): unknown {
  if (!existsSync(path)) throw new ModelFilesError(path, 'file not found');
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new ModelFilesError(path, `not valid JSON: ${(cause as Error).message}`);
  }
}

/**
 * Loads a model folder (`config.json` + `model.safetensors`, Hugging Face or
 * converted layout) onto the active tfjs backend.
 */
export function loadModel(dir: string, options: LoadModelOptions = {}): NomicBertModel {
  const config = readConfig(dir, options);
  const weightsPath = join(dir, options.weightsFile ?? 'model.safetensors');
  if (!existsSync(weightsPath)) throw new ModelFilesError(weightsPath, 'weights file not found');
  const checkpoint = openCheckpoint(weightsPath, config);
  try {
    return NomicBertModel.fromTensors(config, runtimeTensors(checkpoint, config));
  } finally {
    checkpoint.file.close();
  }
}
