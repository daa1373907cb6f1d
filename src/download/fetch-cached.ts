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
}

export type ProgressCallback = (file: string, loadedBytes: number, totalBytes: number | undefined) => void;

export interface FetchCachedOptions {
  /** Where files are kept between loads; `false` fetches every time. */
  readonly cache?: ResponseCache | false;
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
  const { cache = false, onProgress, signal, headers } = options;
  if (cache) {
    const hit = await cache.match(url);
    if (hit?.ok) {
      try {
        return await readWithProgress(hit, url, file, onProgress);
      } catch {
        // A cache evicted or damaged under us: the network still has the file.
      }
    }
  }
  let response: Response;
  try {
    response = await request(url, { signal, headers });
  } catch (error) {
    if (signal?.aborted) throw new DownloadError(url, `${file}: download aborted before the server answered`);
    throw error;
  }
  const bytes = await readWithProgress(response, url, file, onProgress);
  if (cache) {
    await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) } }));
  }
  return bytes;
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
