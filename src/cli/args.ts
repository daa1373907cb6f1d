import type { ParseArgsConfig } from 'node:util';
import { AUTO_ORDER, type BackendChoice } from '../backends/select.js';
import { DTYPES } from '../model/projection.js';
import type { LoadEmbedderOptions } from '../pipeline/embed-options.js';
import { NomicEmbedError } from '../errors.js';
export { LONG_TEXT_MODES, TASKS, TRUNCATIONS } from '../pipeline/tokenizer.js';

/** Wrong arguments: exit code 2 and a pointer to --help. */
export class UsageError extends NomicEmbedError {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs settings every command shares: strict (unknown options are errors), positionals allowed, --verbose. */
export function argsConfig<T extends Options>(args: readonly string[], options: T) {
  return {
    args: [...args],
    options: { ...options, verbose: { type: 'boolean' as const } },
    allowPositionals: true as const,
    strict: true as const,
  };
}

export function integerOption(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer of at least ${min}, got "${value}"`);
  return n;
}

/** `value` when it is one of `choices`; undefined when absent. */
export function choiceOption<T extends string>(name: string, value: string | undefined, choices: readonly T[]): T | undefined {
  if (value === undefined || (choices as readonly string[]).includes(value)) return value as T | undefined;
  const allowed = choices.length === 2 ? `${choices[0]} or ${choices[1]}` : `one of ${choices.join(', ')}`;
  throw new UsageError(`--${name} must be ${allowed}, got "${value}"`);
}

export function backendOption(value: string | undefined): BackendChoice {
  const backend = (value ?? 'auto') as BackendChoice;
  if (backend !== 'auto' && !AUTO_ORDER.includes(backend)) {
    throw new UsageError(`--backend must be auto or one of ${AUTO_ORDER.join(', ')}, got "${value}"`);
  }
  return backend;
}

/** Where a command's model comes from: a folder, or a hub repository id and its revision (see model-source.ts). */
export const MODEL_SOURCE_OPTIONS = {
  model: { type: 'string' },
  revision: { type: 'string' },
  offline: { type: 'boolean' },
} as const;

/** Where the commands that load a model take it from and how they run it. */
export const EMBEDDER_OPTIONS = {
  ...MODEL_SOURCE_OPTIONS,
  backend: { type: 'string' },
  workers: { type: 'string' },
  threads: { type: 'string' },
  dtype: { type: 'string' },
} as const;

/** `loadEmbedder` options from EMBEDDER_OPTIONS (and `--max-length`, for the commands that take it). */
export function embedderOptions(values: { backend?: string; workers?: string; threads?: string; dtype?: string; 'max-length'?: string }): LoadEmbedderOptions {
  return {
    dtype: choiceOption('dtype', values.dtype, DTYPES),
    backend: backendOption(values.backend),
    workers: integerOption('workers', values.workers),
    threads: integerOption('threads', values.threads),
    maxLength: integerOption('max-length', values['max-length'], 2),
  };
}
