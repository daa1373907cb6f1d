import { Embedder, warmUp } from '../embedder-core.js';
import type { ResponseCache } from '../download/fetch-cached.js';
import { ConfigError, InputError } from '../errors.js';
import { loadModelFromBytes } from '../model/load-model-bytes.js';
import { DTYPES, type Dtype } from '../model/projection.js';
import { checkChoice, checkInteger, checkOptionNames, describe } from '../options.js';
import { TextTokenizer } from '../pipeline/tokenizer.js';
import { LocalRunner } from '../pool/local-runner.js';
import { DEFAULT_CACHE_NAME, fetchModelFiles, type ModelFilesOptions } from './model-files.js';
import { PAGE_BACKENDS, refusalBeforeStart, startPageBackend, type PageBackendChoice, type StartedBackend, type WasmPaths } from './page-backend.js';

export interface PageLoadOptions extends ModelFilesOptions {
  /** `auto` takes WebGPU on a hardware adapter, else wasm. @default 'auto' */
  readonly backend?: PageBackendChoice;
  /** Where tfjs-backend-wasm's `.wasm` files are: a URL prefix, or a URL per file name. @default the package's own copies, beside the bundle */
  readonly wasmPaths?: WasmPaths;
  /** Threads of wasm's threaded build, which tfjs takes where the page is cross-origin isolated. @default `navigator.hardwareConcurrency` */
  readonly threads?: number;
  /** Longest sequence in tokens, [CLS] and [SEP] included. @default `model_max_length`, else the config's `n_positions` */
  readonly maxLength?: number;
  /** Dynamic NTK rotary scaling factor, replacing the config's. @default the config's */
  readonly rotaryScalingFactor?: number | null;
  /** Weight precision: `q8` holds the projections as int8 and runs them on our int8 kernel (wasm; cpu, slowly). @default 'fp32' */
  readonly dtype?: Dtype;
}

export const PAGE_LOAD_OPTION_NAMES = Object.keys({
  backend: true, wasmPaths: true, threads: true, maxLength: true, rotaryScalingFactor: true, dtype: true,
  revision: true, endpoint: true, token: true, cache: true, onProgress: true, signal: true, weightsFile: true,
} satisfies Record<keyof PageLoadOptions, true>);

/**
 * Loads a model in a web page (or a Web Worker): a Hugging Face hub
 * repository id, or the URL of a folder with `config.json`,
 * `tokenizer.json`, `model.safetensors` and optionally
 * `tokenizer_config.json`. The files are kept in the Cache API, so a second
 * load downloads nothing.
 *
 * @example
 * const embedder = await loadEmbedder('nomic-ai/nomic-embed-text-v1.5');
 * const { embeddings } = await embedder.embed(['hello'], { task: 'search_query' });
 */
export async function loadEmbedder(source: string, options: PageLoadOptions = {}): Promise<Embedder> {
  checkPageOptions(options);
  const choice = options.backend ?? 'auto';
  const dtype = options.dtype ?? 'fp32';
  const refusal = refusalBeforeStart(choice, dtype);
  if (refusal !== undefined) throw new ConfigError('dtype', dtype, `not on the ${choice} backend: ${refusal}`);
  // The backend starts while the files arrive (from the cache, as long as the start); where it fails, or cannot
  // run `dtype`, the download stops and that failure is the one thrown.
  const stop = new AbortController();
  const ready = startPageBackend(choice, { wasmPaths: options.wasmPaths, threads: options.threads }).then((backend) => ({ backend, packer: packerFor(backend, dtype) }));
  ready.catch(() => stop.abort());
  const signal = options.signal === undefined ? stop.signal : AbortSignal.any([options.signal, stop.signal]);
  let files;
  try {
    files = await fetchModelFiles(source, { ...options, signal }, await openCache(options.cache), configOverrides(options));
  } catch (error) {
    throw await ready.then(() => error, (failure: unknown) => failure);
  }
  const { backend, packer } = await ready;
  const model = loadModelFromBytes(files.config, files.weights, modelOverrides(files.weightsUrl, options), backend.allocate, packer);
  // From here the model holds its weights on the backend: a failure frees them.
  try {
    const tokenizer = TextTokenizer.fromFiles(files.tokenizer, model.config.n_positions, options.maxLength);
    const runner = new LocalRunner(model, backend.guard, backend.threads, backend.policy.batchesInFlight);
    const embedder = new Embedder(runner, tokenizer, backend.policy, model.config, {
      modelName: files.name,
      machineBytes: machineBytes(),
      device: backend.device,
      dtype,
    });
    await warmUp(embedder);
    return embedder;
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** How the backend makes the projections for `dtype`; a {@link ConfigError} where it cannot run it. */
function packerFor(backend: StartedBackend, dtype: Dtype) {
  const packer = backend.packer(dtype);
  if (typeof packer === 'string') throw new ConfigError('dtype', dtype, `not on the ${backend.policy.name} backend here: ${packer}`);
  return packer;
}

/** The weights' label in errors, and the config fields the options replace. */
function modelOverrides(weightsUrl: string, options: PageLoadOptions) {
  return { label: weightsUrl, ...configOverrides(options) };
}

function configOverrides(options: PageLoadOptions) {
  return options.rotaryScalingFactor !== undefined ? { rotary_scaling_factor: options.rotaryScalingFactor } : {};
}

function checkPageOptions(options: PageLoadOptions): void {
  checkOptionNames('loadEmbedder options', options, PAGE_LOAD_OPTION_NAMES);
  if (options.backend !== undefined) checkChoice('backend', options.backend, ['auto', ...PAGE_BACKENDS]);
  if (options.maxLength !== undefined) checkInteger('maxLength', options.maxLength, 2);
  if (options.threads !== undefined) checkInteger('threads', options.threads, 1);
  if (options.dtype !== undefined) checkChoice('dtype', options.dtype, DTYPES);
  for (const name of ['revision', 'endpoint', 'token', 'weightsFile'] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw new InputError(name, `must be a non-empty string, got ${describe(value)}`);
  }
  const cache = options.cache;
  if (cache !== undefined && cache !== false && typeof cache !== 'string' && (typeof cache?.match !== 'function' || typeof cache?.put !== 'function')) {
    throw new InputError('cache', `must be a cache name, an object with match and put, or false, got ${describe(cache)}`);
  }
}

/** The Cache API cache the options name; none where the page has no Cache API (an insecure origin), or with `cache: false`. */
async function openCache(cache: PageLoadOptions['cache']): Promise<ResponseCache | false> {
  if (cache === false) return false;
  if (cache !== undefined && typeof cache !== 'string') return cache;
  const storage = (globalThis as { caches?: { open(name: string): Promise<ResponseCache> } }).caches;
  if (storage === undefined) return false;
  return storage.open(cache ?? DEFAULT_CACHE_NAME);
}

/** The memory default budgets are a share of: `navigator.deviceMemory` (GiB, rounded down and capped at 8 by browsers), else 4 GiB. */
function machineBytes(): number {
  const gib = (globalThis as { navigator?: { deviceMemory?: number } }).navigator?.deviceMemory;
  return (typeof gib === 'number' && gib > 0 ? gib : 4) * 1024 ** 3;
}
