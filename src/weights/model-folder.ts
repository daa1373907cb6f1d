import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFilesError } from '../errors.js';
import { parseConfig, type ConfigOverrides, type NomicBertConfig } from './config.js';
import { checkCheckpoint, type CheckedCheckpoint } from './load.js';
import { openSafetensors } from './safetensors-file.js';

/**
 * Reading a model folder: `config.json`, the weights file, `tokenizer.json`
 * and the optional `tokenizer_config.json` (a Hugging Face download or a
 * converted folder). The model loader, the tokenizer, the converter and the
 * embedder all find their files here, so a missing or malformed file is
 * reported the same way whoever reads it.
 */

export const CONFIG_FILE = 'config.json';
export const DEFAULT_WEIGHTS_FILE = 'model.safetensors';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** Reads a JSON file, turning a missing or malformed file into a {@link ModelFilesError}. */
export function readJson(path: string): unknown {
  if (!existsSync(path)) throw new ModelFilesError(path, 'file not found');
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new ModelFilesError(path, `not valid JSON: ${(cause as Error).message}`);
  }
}

/** Reads and parses `config.json` of a model folder. */
export function readConfig(dir: string, overrides: ConfigOverrides = {}): NomicBertConfig {
  return parseConfig(readJson(join(dir, CONFIG_FILE)), overrides);
}

/** The weights file of a folder; a {@link ModelFilesError} when it is not there. */
export function weightsPath(dir: string, weightsFile: string = DEFAULT_WEIGHTS_FILE): string {
  const path = join(dir, weightsFile);
  if (!existsSync(path)) throw new ModelFilesError(path, 'weights file not found');
  return path;
}

export interface TokenizerFiles {
  /** Where `tokenizer.json` was read (a path or a URL), for messages. */
  readonly path: string;
  readonly tokenizer: object;
  /** `tokenizer_config.json`, or `{}` when the folder has none. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly configPath: string;
}

/** Reads `tokenizer.json` (required) and `tokenizer_config.json` (optional). */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const path = join(dir, TOKENIZER_FILE);
  if (!existsSync(path)) {
    throw new ModelFilesError(path, 'tokenizer.json not found; the model folder needs its tokenizer files');
  }
  const configPath = join(dir, TOKENIZER_CONFIG_FILE);
  const config = existsSync(configPath) ? readJson(configPath) : {};
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ModelFilesError(configPath, 'must hold a JSON object');
  }
  const tokenizer = readJson(path);
  if (tokenizer === null || typeof tokenizer !== 'object' || Array.isArray(tokenizer)) {
    throw new ModelFilesError(path, 'must hold a JSON object');
  }
  return { path, tokenizer, config: config as Record<string, unknown>, configPath };
}

/**
 * Opens a checkpoint (Hugging Face layout or converted) and checks, before any
 * data is read, that it holds exactly the tensors the config calls for.
 */
export function openCheckpoint(path: string, config: NomicBertConfig): CheckedCheckpoint {
  return checkCheckpoint(openSafetensors(path), config);
}
