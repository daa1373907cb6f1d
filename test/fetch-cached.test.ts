import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fetchCached, type ResponseCache } from '../src/download/fetch-cached.js';
import { DownloadError } from '../src/errors.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { openSafetensors } from '../src/weights/safetensors-file.js';
import { fixtureDir } from './helpers/fixtures.js';
import { startHub, type HubFault } from './helpers/hub-server.js';

const folder = fixtureDir('nomic-tiny');
const weights = readFileSync(`${folder}/model.safetensors`);
let hub: Awaited<ReturnType<typeof startHub>> | undefined;

afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

async function serve(fault: HubFault = {}) {
  hub = await startHub(folder, ['model.safetensors', 'config.json'], fault);
  return { hub, url: (file: string) => `${hub!.endpoint}/nomic-ai/nomic-embed-text-v1.5/resolve/main/${file}` };
}

/** The Cache API's two methods over a Map, as a page's `caches.open()` would give them. */
function memoryCache(): ResponseCache & { readonly stored: Map<string, ArrayBuffer> } {
  const stored = new Map<string, ArrayBuffer>();
  return {
    stored,
    async match(url) {
      const bytes = stored.get(url);
      return bytes === undefined ? undefined : new Response(bytes.slice(0), { headers: { 'content-length': String(bytes.byteLength) } });
    },
    async put(url, response) {
      stored.set(url, await response.arrayBuffer());
    },
  };
}

const gets = (requests: { method: string; path: string }[], file: string) =>
  requests.filter((r) => r.method === 'GET' && r.path.endsWith(file)).length;

describe('fetchCached', () => {
  it('fetches through the hub redirect with progress, and loads the second time from the cache without a request', async () => {
    const { hub, url } = await serve();
    const cache = memoryCache();
    const progress: [string, number, number | undefined][] = [];
    const first = await fetchCached(url('model.safetensors'), 'model.safetensors', { cache, onProgress: (...p) => progress.push(p) });
    expect(Buffer.from(first).equals(weights)).toBe(true);
    expect(progress[0]).toEqual(['model.safetensors', 0, weights.length]);
    expect(progress.at(-1)).toEqual(['model.safetensors', weights.length, weights.length]);
    expect(progress.every(([, loaded], i) => i === 0 || loaded >= progress[i - 1][1])).toBe(true);
    const requestsAfterFirst = hub.requests.length;

    const second = await fetchCached(url('model.safetensors'), 'model.safetensors', { cache });
    expect(hub.requests.length).toBe(requestsAfterFirst);
    expect(Buffer.from(second).equals(weights)).toBe(true);
    const file = SafetensorsFile.fromBytes(second, url('model.safetensors'));
    expect(file.readFloat32('emb_ln.weight')).toEqual(openSafetensors(`${folder}/model.safetensors`).readFloat32('emb_ln.weight'));
  });

  it('fetches every time without a cache', async () => {
    const { hub, url } = await serve();
    await fetchCached(url('config.json'), 'config.json');
    await fetchCached(url('config.json'), 'config.json', { cache: false });
    expect(gets(hub.requests, 'config.json')).toBe(2);
  });

  it('fetches again when the cached copy cannot be read', async () => {
    const { hub, url } = await serve();
    const broken: ResponseCache = {
      match: async () => new Response(new ReadableStream({ start: (c) => c.error(new Error('evicted')) })),
      put: async () => {},
    };
    const bytes = await fetchCached(url('config.json'), 'config.json', { cache: broken });
    expect(Buffer.from(bytes).equals(readFileSync(`${folder}/config.json`))).toBe(true);
    expect(gets(hub.requests, 'config.json')).toBe(1);
  });

  it('a cache that refuses a file costs a warning, not the fetch; with store false a fetched file is not put, a cached one still read', async () => {
    const { hub, url } = await serve();
    const refusing: ResponseCache = { match: async () => undefined, put: () => Promise.reject(new Error('QuotaExceededError')) };
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const bytes = await fetchCached(url('config.json'), 'config.json', { cache: refusing });
      expect(Buffer.from(bytes).equals(readFileSync(`${folder}/config.json`))).toBe(true);
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/config\.json could not be kept in the cache \(QuotaExceededError\)/));
    } finally {
      warn.mockRestore();
    }
    const cache = memoryCache();
    await fetchCached(url('config.json'), 'config.json', { cache, store: false });
    expect(cache.stored.size).toBe(0);
    cache.stored.set(url('config.json'), new Uint8Array([123, 125]).buffer);
    expect(new TextDecoder().decode(await fetchCached(url('config.json'), 'config.json', { cache, store: false }))).toBe('{}');
    expect(gets(hub.requests, 'config.json')).toBe(2);
  });

  it('a cached copy shorter than its Content-Length is fetched again', async () => {
    const { hub, url } = await serve();
    const short: ResponseCache = { match: async () => new Response('{', { headers: { 'content-length': '100' } }), put: async () => {} };
    const bytes = await fetchCached(url('config.json'), 'config.json', { cache: short });
    expect(Buffer.from(bytes).equals(readFileSync(`${folder}/config.json`))).toBe(true);
    expect(gets(hub.requests, 'config.json')).toBe(1);
  });

  it('gives a DownloadError naming the URL for a missing file', async () => {
    const { url } = await serve();
    const error = await fetchCached(url('missing.json'), 'missing.json').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as DownloadError).url).toBe(url('missing.json'));
    expect((error as Error).message).toMatch(/HTTP 404/);
  });

  it('refuses a download cut short, and caches nothing of it', async () => {
    const { url } = await serve({ cutAfter: { 'model.safetensors': 5000 } });
    const cache = memoryCache();
    const error = await fetchCached(url('model.safetensors'), 'model.safetensors', { cache }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as Error).message).toMatch(/model\.safetensors: .*(5000|broke off)/);
    expect(cache.stored.size).toBe(0);
    // The next load starts afresh and succeeds.
    const bytes = await fetchCached(url('model.safetensors'), 'model.safetensors', { cache });
    expect(Buffer.from(bytes).equals(weights)).toBe(true);
    expect(cache.stored.size).toBe(1);
  });

  it('stops when aborted, with a DownloadError, and caches nothing', async () => {
    const { url } = await serve({ delay: { 'model.safetensors': 2000 } });
    const cache = memoryCache();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const error = await fetchCached(url('model.safetensors'), 'model.safetensors', { cache, signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as Error).message).toMatch(/model\.safetensors: download aborted/);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(cache.stored.size).toBe(0);
  });
});
