import { DownloadError } from '../errors.js';
import { request } from './remote.js';

/**
 * Model files over HTTP into memory, for pages (and any runtime without a
 * disk to pull to): a cached copy when there is one, otherwise a GET read
 * with progress, checked for length, then stored in the cache. Uses only
 * `fetch`, `Response` and streams, so it runs in browsers and in Node alike.
 */

/** What the Cache API offers, and all it needs: a page's `caches.open(name)`, or any object alike. */
export interface ResponseCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  /** Where there is one, what replaces an entry uses it to free the old one. */
  delete?(url: string): Promise<boolean>;
}

export type ProgressCallback = (file: string, loadedBytes: number, totalBytes: number | undefined) => void;

export interface FetchCachedOptions {
  /** Where files are kept between loads; `false` fetches every time. */
  readonly cache?: ResponseCache | false;
  /** Whether a fetched file is stored in the cache; a cached copy is used either way. @default true */
  readonly store?: boolean;
  readonly onProgress?: ProgressCallback;
  readonly signal?: AbortSignal;
  /** Request headers (an `authorization` for the hub); redirects to another origin drop it, as `fetch` does. */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The bytes of `url`. `file` is the name progress reports and errors name
 * beside the URL. A cached copy that is unreadable is fetched again; a
 * response shorter or longer than its `Content-Length` is a
 * {@link DownloadError} and is never cached.
 */
export async function fetchCached(url: string, file: string, options: FetchCachedOptions = {}): Promise<ArrayBuffer> {
  const { cache = false, store = true, onProgress, signal, headers } = options;
  if (cache) {
    const hit = await readCached(cache, url, file, onProgress);
    if (hit !== undefined) return hit;
  }
  let response: Response;
  try {
    response = await request(url, { signal, headers });
  } catch (error) {
    if (signal?.aborted) throw new DownloadError(url, `${file}: download aborted before the server answered`);
    throw error;
  }
  const bytes = await readWithProgress(response, url, file, onProgress);
  if (cache && store) {
    const kept = new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) } });
    // A cache that refuses the file (its quota full, a browser's internal error) costs the next load a download, not this load.
    await cache.put(url, kept).catch((error: unknown) => warnNotKept(file, error));
  }
  return bytes;
}

/** Says that `file` was fetched but could not be kept in the cache, and what the next load will do. */
export function warnNotKept(file: string, error: unknown): void {
  console.warn(`${file} could not be kept in the cache (${(error as Error)?.message ?? String(error)}); the next load fetches it again`);
}

/**
 * The bytes cached for `url`, or undefined where there are none or they
 * cannot be read whole (a cache evicted or damaged under us: the network
 * still has the file). Read as a Blob, which Chromium hands over in one piece
 * (half the time of reading its stream).
 */
export async function readCached(cache: ResponseCache, url: string, file: string, onProgress?: ProgressCallback): Promise<ArrayBuffer | undefined> {
  const hit = await cache.match(url);
  if (!hit?.ok) return undefined;
  try {
    const blob = await hit.blob();
    const declared = Number(hit.headers.get('content-length') ?? NaN);
    if (Number.isSafeInteger(declared) && declared !== blob.size) return undefined;
    onProgress?.(file, 0, blob.size);
    const bytes = await blob.arrayBuffer();
    onProgress?.(file, bytes.byteLength, bytes.byteLength);
    return bytes;
  } catch {
    return undefined;
  }
}

async function readWithProgress(response: Response, url: string, file: string, onProgress: ProgressCallback | undefined): Promise<ArrayBuffer> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  const total = Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
  if (response.body === null) throw new DownloadError(url, `${file}: the answer has no body`);
  const reader = response.body.getReader();
  // With a known length the bytes land in their final buffer as they come: no second whole copy.
  let buffer = new Uint8Array(total ?? 1 << 20);
  let loaded = 0;
  onProgress?.(file, 0, total);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > buffer.length) {
        if (total !== undefined) throw new DownloadError(url, `${file}: more bytes than the ${total} its Content-Length announced`);
        const grown = new Uint8Array(Math.max(buffer.length * 2, loaded + value.length));
        grown.set(buffer.subarray(0, loaded));
        buffer = grown;
      }
      buffer.set(value, loaded);
      loaded += value.length;
      onProgress?.(file, loaded, total);
    }
  } catch (cause) {
    // Frees the connection of an answer refused part-way; one already broken has nothing to free.
    await reader.cancel().catch(() => {});
    if (cause instanceof DownloadError) throw cause;
    const aborted = (cause as Error).name === 'AbortError';
    throw new DownloadError(url, `${file}: ${aborted ? 'download aborted' : 'download broke off'} after ${loaded} bytes (${(cause as Error).message})`);
  }
  if (total !== undefined && loaded !== total) {
    throw new DownloadError(url, `${file}: got ${loaded} of the ${total} bytes its Content-Length announced (connection cut?)`);
  }
  return loaded === buffer.length ? buffer.buffer : buffer.slice(0, loaded).buffer;
}
