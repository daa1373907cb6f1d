import { fetchCached, readCached, warnNotKept, type FetchCachedOptions, type ResponseCache } from '../download/fetch-cached.js';
import { NomicEmbedError } from '../errors.js';
import type { NomicBertConfig } from '../weights/config.js';
import { checkCheckpoint, CONVERTED_FORMAT_VERSION } from '../weights/load.js';
import { encodeRuntimeLayout } from '../weights/runtime-layout.js';
import { SafetensorsFile } from '../weights/safetensors.js';

/**
 * A page's weights, kept in its cache in the runtime layout (matrices
 * transposed, q/k/v split), as Node keeps a converted copy beside the file:
 * a Hugging Face checkpoint is converted once, as it is stored, so every
 * later load reads tensors that go to the backend as they are (the
 * conversion is most of a load from the cache otherwise). The original file
 * is not kept; one an earlier version kept is read instead of downloaded,
 * and replaced.
 */

/** The cache key of the runtime layout of the weights at `weightsUrl`, of this format version. */
export function runtimeEntryUrl(weightsUrl: string): string {
  const url = new URL(weightsUrl);
  url.searchParams.set('nomic-embed-layout', `runtime-${CONVERTED_FORMAT_VERSION}`);
  return url.href;
}

export interface RuntimeWeightsOptions extends Omit<FetchCachedOptions, 'cache' | 'store'> {
  readonly cache: ResponseCache | false;
}

/**
 * The bytes of a checkpoint for `config`: the runtime layout from the cache,
 * else the file from the network (progress for `file` either way), which is
 * then kept in the cache in the runtime layout. A cache that cannot keep it
 * costs a warning and the next load a download; a kept entry that is not a
 * readable runtime layout is replaced.
 */
export async function fetchRuntimeWeights(weightsUrl: string, file: string, config: NomicBertConfig, options: RuntimeWeightsOptions): Promise<ArrayBuffer> {
  const { cache } = options;
  if (!cache) return fetchCached(weightsUrl, file, options);
  const key = runtimeEntryUrl(weightsUrl);
  const kept = await readRuntimeEntry(cache, key, file, config, options);
  if (kept !== undefined) return kept;
  const unkept = await downloadAndKeep(cache, key, weightsUrl, file, config, options);
  if (unkept !== undefined) return unkept;
  // Read back rather than converted again in memory: the kept copy is what every later load reads.
  // Its progress is not told: the download already came to the whole file, and a bar would jump back.
  return (await readRuntimeEntry(cache, key, file, config, { ...options, onProgress: undefined })) ?? fetchCached(weightsUrl, file, { ...options, cache: false });
}

/** The entry under `key` where it is a runtime layout for `config`; one that is there but is not is deleted. */
async function readRuntimeEntry(cache: ResponseCache, key: string, file: string, config: NomicBertConfig, options: RuntimeWeightsOptions): Promise<ArrayBuffer | undefined> {
  const bytes = await readCached(cache, key, file, options.onProgress);
  if (bytes !== undefined) {
    try {
      const checkpoint = checkCheckpoint(SafetensorsFile.fromBytes(bytes, key), config);
      checkpoint.file.close();
      if (checkpoint.layout === 'runtime') return bytes;
    } catch {
      // Damaged, or for another model under the same URL: fetched again.
    }
  }
  // Unreadable too (a cache of the caller's that kept a body that broke off as it was read).
  await cache.delete?.(key).catch(() => false);
  return undefined;
}

/**
 * Downloads the file (or takes the original an earlier version cached) and
 * keeps its runtime layout under `key`. Returns the downloaded bytes where
 * the cache would not keep them, undefined once kept (so the caller holds
 * no second copy while it reads the kept one). A file that is not a
 * checkpoint for `config`, or holds a NaN, throws as a load from it would.
 */
async function downloadAndKeep(
  cache: ResponseCache,
  key: string,
  weightsUrl: string,
  file: string,
  config: NomicBertConfig,
  options: RuntimeWeightsOptions,
): Promise<ArrayBuffer | undefined> {
  const bytes = await fetchCached(weightsUrl, file, { ...options, cache, store: false });
  const checkpoint = checkCheckpoint(SafetensorsFile.fromBytes(bytes, weightsUrl), config);
  const runtime = checkpoint.layout === 'runtime';
  const encoded = runtime ? undefined : encodeRuntimeLayout(checkpoint, config, 'F32', { source: weightsUrl });
  const chunks = encoded?.chunks() ?? slices(new Uint8Array(bytes), PUT_CHUNK_BYTES);
  let failure: unknown;
  // Pulled a tensor (or a slice) at a time as the cache reads it (a cache of the caller's may
  // read after its put has returned): never a second whole copy in memory. Chromium's put
  // of a response made from one 550 MB buffer fails now and then; streamed, it does not.
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      try {
        const next = chunks.next();
        if (!next.done) return controller.enqueue(next.value);
        checkpoint.file.close();
        controller.close();
      } catch (error) {
        failure = error;
        checkpoint.file.close();
        controller.error(error);
      }
    },
    cancel: () => checkpoint.file.close(),
  });
  const byteLength = encoded?.byteLength ?? bytes.byteLength;
  try {
    await cache.put(key, new Response(body, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(byteLength) } }));
  } catch (error) {
    // The file's own fault (a NaN weight) is the load's error; the cache's is only a warning.
    if (failure instanceof NomicEmbedError) throw failure;
    warnNotKept(file, error);
    return bytes;
  }
  await cache.delete?.(weightsUrl).catch(() => false);
  return undefined;
}

/** How much of a file already in the page's memory each pull of its cached body takes. */
const PUT_CHUNK_BYTES = 8 * 2 ** 20;

function* slices(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}
