import { fetchCached, type ProgressCallback, type ResponseCache } from '../download/fetch-cached.js';
import { DownloadError, InputError } from '../errors.js';
import { describe } from '../options.js';
import { parseConfig, type ConfigOverrides } from '../weights/config.js';
import type { TokenizerFiles } from '../weights/model-folder.js';
import { fetchRuntimeWeights } from './runtime-weights.js';

/**
 * A model's files fetched over HTTP: from a Hugging Face hub repository
 * (`owner/name`, at a revision, from the hub or a mirror of it) or from the
 * URL of a folder that holds them. What the page's loader reads; nothing of
 * it needs a file system.
 */

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_CACHE_NAME = 'nomic-embed';
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export interface ModelFilesOptions {
  /** With a hub repository id: its branch, tag or commit. @default 'main' */
  readonly revision?: string;
  /** With a hub repository id: the hub, or a mirror of it. @default 'https://huggingface.co' */
  readonly endpoint?: string;
  /**
   * With a hub repository id: an access token for gated or private models,
   * sent to the hub only (a browser drops it when the hub redirects to the
   * storage of the weights, another origin).
   */
  readonly token?: string;
  /**
   * Where the files are kept between loads: a Cache API cache of this name,
   * any object with the Cache API's `match` and `put`, or `false` to fetch
   * every time. @default 'nomic-embed'
   */
  readonly cache?: string | ResponseCache | false;
  /** Bytes of each file so far, while it downloads (or is read from the cache). */
  readonly onProgress?: ProgressCallback;
  /** Withdraws the load: downloads stop and the load rejects with a `DownloadError`. */
  readonly signal?: AbortSignal;
  /** The weights file in the folder. @default 'model.safetensors' */
  readonly weightsFile?: string;
}

export interface FetchedModel {
  /** The base URL the files were fetched from, ending in `/`. */
  readonly url: string;
  /** The repository's or folder's last path segment: `nomic-embed-text-v1.5`. */
  readonly name: string;
  readonly config: unknown;
  readonly tokenizer: TokenizerFiles;
  readonly weights: ArrayBuffer;
  readonly weightsUrl: string;
}

/** Whether `source` names a hub repository rather than a URL: `owner/name`, nothing more. */
export function isHubRepository(source: string): boolean {
  return HUB_ID.test(source) && !source.startsWith('.');
}

/** The folder URL files of `source` are fetched from, ending in `/`; a relative URL is taken against `base`. */
export function modelBaseUrl(source: string, options: Pick<ModelFilesOptions, 'revision' | 'endpoint'>, base?: string): string {
  if (typeof source !== 'string' || source === '') throw new InputError('source', `must be a hub repository id or a model folder's URL, got ${describe(source)}`);
  if (isHubRepository(source)) {
    const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
    return `${endpoint}/${source}/resolve/${encodeURIComponent(options.revision ?? 'main')}/`;
  }
  if (options.revision !== undefined) throw new InputError('revision', `applies to a hub repository id; ${source} is a URL`);
  let url: URL;
  try {
    url = new URL(source, base);
  } catch {
    throw new InputError('source', `${source} is neither a hub repository id (owner/name) nor a URL`);
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

/**
 * Fetches the four files of a model (`tokenizer_config.json` may be
 * missing), the weights last so progress reads in order; the config, checked
 * with `overrides` first, says what runtime layout the weights are kept in.
 */
export async function fetchModelFiles(source: string, options: ModelFilesOptions, cache: ResponseCache | false, overrides: ConfigOverrides = {}): Promise<FetchedModel> {
  const url = modelBaseUrl(source, options, (globalThis as { location?: { href: string } }).location?.href);
  const headers: Record<string, string> = options.token && isHubRepository(source) ? { authorization: `Bearer ${options.token}` } : {};
  const fetchOptions = { cache, onProgress: options.onProgress, signal: options.signal, headers };
  const json = async (file: string, optional = false): Promise<unknown> => {
    let bytes: ArrayBuffer;
    try {
      bytes = await fetchCached(url + file, file, fetchOptions);
    } catch (error) {
      if (optional && error instanceof DownloadError && error.status === 404) return {};
      throw error;
    }
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (cause) {
      throw new DownloadError(url + file, `${file} is not valid JSON: ${(cause as Error).message}`);
    }
  };
  const [config, tokenizer, tokenizerConfig] = await Promise.all([json('config.json'), json('tokenizer.json'), json('tokenizer_config.json', true)]);
  for (const [file, value] of [['tokenizer.json', tokenizer], ['tokenizer_config.json', tokenizerConfig]] as const) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DownloadError(url + file, `${file} must hold a JSON object`);
  }
  const weightsFile = options.weightsFile ?? 'model.safetensors';
  const weights = await fetchRuntimeWeights(url + weightsFile, weightsFile, parseConfig(config, overrides), fetchOptions);
  const name = isHubRepository(source) ? source.split('/')[1] : (new URL(url).pathname.split('/').filter(Boolean).pop() ?? 'model');
  return {
    url,
    name,
    config,
    tokenizer: { path: url + 'tokenizer.json', configPath: url + 'tokenizer_config.json', tokenizer: tokenizer as object, config: tokenizerConfig as Record<string, unknown> },
    weights,
    weightsUrl: url + weightsFile,
  };
}
