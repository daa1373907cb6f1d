import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createEmbedderWorker, type WorkerLike } from '../src/browser/embedder-worker.js';
import { loadEmbedder } from '../src/browser/load-embedder.js';
import { modelBaseUrl } from '../src/browser/model-files.js';
import { runtimeEntryUrl } from '../src/browser/runtime-weights.js';
import { serveEmbedder, type MessageScope } from '../src/browser/worker.js';
import { BackendError, DownloadError, InputError, NonFiniteWeightError, SafetensorsError } from '../src/errors.js';
import type { ResponseCache } from '../src/download/fetch-cached.js';
import { convertWeights } from '../src/weights/convert.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { cosine, expectClose, FIXTURES, reference, TOLERANCE } from './helpers/fixtures.js';
import { startPageServer } from '../scripts/browser/page-server.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The page's loader and its worker protocol, run in Node on the cpu backend:
 * everything a page does but start a browser's backends (test/browser.test.ts
 * does that in Chromium).
 */

const texts = reference('nomic-tiny').texts;
let server: Awaited<ReturnType<typeof startPageServer>>;
let model: string;

let broken: string;

beforeAll(async () => {
  // A model folder whose tokenizer.json is JSON but no tokenizer: it fails after the weights are on the backend.
  broken = tempDir();
  mkdirSync(join(broken, 'no-tokenizer'));
  for (const file of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'nomic-tiny', file), join(broken, 'no-tokenizer', file));
  writeFileSync(join(broken, 'no-tokenizer', 'tokenizer.json'), '{}');
  // The fixture converted to the runtime layout, as `npm run convert` writes it.
  convertWeights(join(FIXTURES, 'nomic-tiny'), join(broken, 'converted'));
  // A model folder whose weights hold a NaN in a layer's fused q/k/v.
  mkdirSync(join(broken, 'nan'));
  for (const file of ['config.json', 'tokenizer.json']) copyFileSync(join(FIXTURES, 'nomic-tiny', file), join(broken, 'nan', file));
  writeFileSync(join(broken, 'nan', 'model.safetensors'), withNaN(readFileSync(join(FIXTURES, 'nomic-tiny', 'model.safetensors')), 'encoder.layers.1.attn.Wqkv.weight', 5));
  server = await startPageServer({ '/models/': FIXTURES, '/broken/': broken }, { hubFolder: `${FIXTURES}nomic-tiny`, hubToken: 'hf_secret' });
  model = `${server.origin}/models/nomic-tiny/`;
});
afterAll(() => server.close());

/** Safetensors bytes with element `index` of float32 tensor `name` set to NaN. */
function withNaN(bytes: Buffer, name: string, index: number): Buffer {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const copy = Buffer.from(bytes);
  copy.writeFloatLE(NaN, 8 + headerLength + header[name].data_offsets[0] + 4 * index);
  return copy;
}

/** The layout of the weights a cache holds under `url`. */
async function keptLayout(cache: ResponseCache, url: string) {
  const kept = await cache.match(url);
  const file = SafetensorsFile.fromBytes(await kept!.arrayBuffer(), url);
  file.close();
  return file.metadata.format === 'nomic-embed-tfjs' ? 'runtime' : 'hf';
}

/** The embedder matches the reference on its short texts (the long paragraph takes seconds on cpu, and the first test covers it). */
async function expectReference(embedder: { embed(texts: string[]): Promise<{ embeddings: Float32Array[] }> }) {
  const short = texts.filter((t) => t.text.length < 200);
  const { embeddings } = await embedder.embed(short.map((t) => t.text));
  short.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `${t.name} embedding`));
}

/** A cache object as the option allows: anything with the Cache API's match and put (and here delete). */
function memoryCache(): ResponseCache & { urls: string[]; stored: Map<string, Response> } {
  const stored = new Map<string, Response>();
  return {
    urls: [],
    stored,
    async match(url: string) {
      return stored.get(url)?.clone();
    },
    async put(url: string, response: Response) {
      this.urls.push(url);
      stored.set(url, response);
    },
    async delete(url: string) {
      return stored.delete(url);
    },
  };
}

describe("a page's model URLs", () => {
  it('resolves a hub id at a revision on a mirror, and a relative folder against the page', () => {
    expect(modelBaseUrl('nomic-ai/nomic-embed-text-v1.5', {})).toBe('https://huggingface.co/nomic-ai/nomic-embed-text-v1.5/resolve/main/');
    expect(modelBaseUrl('nomic-ai/nomic-embed-text-v1.5', { revision: 'v1.0', endpoint: 'https://hf-mirror.com/' })).toBe('https://hf-mirror.com/nomic-ai/nomic-embed-text-v1.5/resolve/v1.0/');
    expect(modelBaseUrl('./models/tiny', {}, 'https://example.org/app/index.html')).toBe('https://example.org/app/models/tiny/');
    expect(modelBaseUrl('/models/tiny/', {}, 'https://example.org/app/')).toBe('https://example.org/models/tiny/');
  });

  it('refuses a revision with a URL, and what is neither', () => {
    expect(() => modelBaseUrl('https://example.org/m/', { revision: 'main' })).toThrow(InputError);
    expect(() => modelBaseUrl('not a url', {})).toThrow(/neither a hub repository id/);
    expect(() => modelBaseUrl('', {})).toThrow(InputError);
  });
});

describe("the page's loadEmbedder (cpu, in Node)", () => {
  it('matches the reference from a model folder URL, with progress for each file', async () => {
    const progress = new Map<string, [number, number | undefined]>();
    const embedder = await loadEmbedder(model, { backend: 'cpu', cache: false, onProgress: (file, loaded, total) => progress.set(file, [loaded, total]) });
    try {
      expect(embedder.backend).toBe('cpu');
      expect(embedder.modelName).toBe('nomic-tiny');
      const { embeddings } = await embedder.embed(texts.map((t) => t.text));
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `${t.name} embedding`));
      const [loaded, total] = progress.get('model.safetensors')!;
      expect(loaded).toBe(total);
      expect([...progress.keys()].sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    } finally {
      await embedder.dispose();
    }
  });

  it('a second load with a cache requests no file, and embeds alike', async () => {
    const cache = memoryCache();
    const progress: number[] = [];
    const first = await loadEmbedder(model, { backend: 'cpu', cache, onProgress: (file, loaded) => file === 'model.safetensors' && progress.push(loaded) });
    // The download's progress only, never back to 0 for the read of the kept copy.
    expect(progress.every((loaded, i) => i === 0 || loaded >= progress[i - 1])).toBe(true);
    expect(progress.at(-1)).toBe(statSync(join(FIXTURES, 'nomic-tiny', 'model.safetensors')).size);
    const before = server.requests.length;
    const second = await loadEmbedder(model, { backend: 'cpu', cache });
    try {
      // Only the optional tokenizer_config.json, missing from the fixture, is asked for again.
      expect(server.requests.slice(before).map((r) => r.path)).toEqual(['/models/nomic-tiny/tokenizer_config.json']);
      expect(cache.urls.map((u) => u.slice(model.length)).sort()).toEqual(['config.json', `model.safetensors?nomic-embed-layout=runtime-1`, 'tokenizer.json']);
      // The weights are kept converted, so a load from the cache has no transposing to do.
      expect(await keptLayout(cache, runtimeEntryUrl(`${model}model.safetensors`))).toBe('runtime');
      const [a, b] = await Promise.all([first.embed([texts[0].text]), second.embed([texts[0].text])]);
      expect(b.embeddings[0]).toEqual(a.embeddings[0]);
      texts.forEach((t, i) => i === 0 && expectClose(b.embeddings[0], t.embedding, TOLERANCE.embedding, `${t.name} embedding`));
    } finally {
      await Promise.all([first.dispose(), second.dispose()]);
    }
  });

  it("an earlier version's cache (the original file under its own URL) loads without a download, and is replaced by the runtime layout", async () => {
    const cache = memoryCache();
    const weightsUrl = `${model}model.safetensors`;
    cache.stored.set(weightsUrl, new Response(readFileSync(join(FIXTURES, 'nomic-tiny', 'model.safetensors'))));
    const before = server.count('/models/nomic-tiny/model.safetensors');
    const embedder = await loadEmbedder(model, { backend: 'cpu', cache });
    try {
      expect(server.count('/models/nomic-tiny/model.safetensors')).toBe(before);
      expect(cache.stored.has(weightsUrl)).toBe(false);
      expect(await keptLayout(cache, runtimeEntryUrl(weightsUrl))).toBe('runtime');
      await expectReference(embedder);
    } finally {
      await embedder.dispose();
    }
  });

  it('a converted folder is kept as it is, byte for byte, and loads from the cache with no request', async () => {
    const cache = memoryCache();
    const converted = `${server.origin}/broken/converted/`;
    await (await loadEmbedder(converted, { backend: 'cpu', cache })).dispose();
    const kept = await cache.match(runtimeEntryUrl(`${converted}model.safetensors`));
    expect(Buffer.from(await kept!.arrayBuffer()).equals(readFileSync(join(broken, 'converted', 'model.safetensors')))).toBe(true);
    const before = server.count('/broken/converted/model.safetensors');
    const embedder = await loadEmbedder(converted, { backend: 'cpu', cache });
    try {
      expect(server.count('/broken/converted/model.safetensors')).toBe(before);
      await expectReference(embedder);
    } finally {
      await embedder.dispose();
    }
  });

  it('a damaged runtime entry is downloaded again and replaced', async () => {
    const cache = memoryCache();
    const key = runtimeEntryUrl(`${model}model.safetensors`);
    cache.stored.set(key, new Response(new Uint8Array(1000).fill(7)));
    const before = server.count('/models/nomic-tiny/model.safetensors');
    const embedder = await loadEmbedder(model, { backend: 'cpu', cache });
    try {
      expect(server.count('/models/nomic-tiny/model.safetensors')).toBe(before + 1);
      expect(await keptLayout(cache, key)).toBe('runtime');
      await expectReference(embedder);
    } finally {
      await embedder.dispose();
    }
  });

  it('a cache that refuses the weights costs a warning, not the load; the next load downloads them again', async () => {
    const cache = memoryCache();
    const put = cache.put.bind(cache);
    cache.put = async (url, response) => (url.includes('.safetensors') ? Promise.reject(new Error('QuotaExceededError')) : put(url, response));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const before = server.count('/models/nomic-tiny/model.safetensors');
    try {
      const embedder = await loadEmbedder(model, { backend: 'cpu', cache });
      await expectReference(embedder).finally(() => embedder.dispose());
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/model\.safetensors could not be kept in the cache \(QuotaExceededError\)/));
      await (await loadEmbedder(model, { backend: 'cpu', cache })).dispose();
      expect(server.count('/models/nomic-tiny/model.safetensors')).toBe(before + 2);
    } finally {
      warn.mockRestore();
    }
  });

  it("a NaN weight is the load's NonFiniteWeightError with a cache too, and nothing is kept for it", async () => {
    const cache = memoryCache();
    const error = await loadEmbedder(`${server.origin}/broken/nan/`, { backend: 'cpu', cache }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonFiniteWeightError);
    expect((error as Error).message).toContain('encoder.layers.1.attn.Wqkv.weight');
    expect([...cache.stored.keys()].filter((url) => url.includes('.safetensors'))).toEqual([]);
  });

  it('a hub id sends the token to the hub and not to the CDN it redirects to', async () => {
    const embedder = await loadEmbedder('nomic-ai/nomic-tiny', { backend: 'cpu', cache: false, endpoint: server.origin, token: 'hf_secret' });
    try {
      expect(embedder.modelName).toBe('nomic-tiny');
      const { embeddings } = await embedder.embed([texts[0].text]);
      expectClose(embeddings[0], texts[0].embedding, TOLERANCE.embedding, 'embedding');
      const cdn = server.requests.filter((r) => r.path.startsWith('/cdn/'));
      expect(cdn.at(-1)?.authorization).toBeUndefined();
      expect(server.requests.filter((r) => r.path.includes('/resolve/')).every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    } finally {
      await embedder.dispose();
    }
  });

  it('a missing model folder is a DownloadError with status 404, naming the URL', async () => {
    const error = await loadEmbedder(`${server.origin}/models/no-such-model/`, { backend: 'cpu', cache: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error).toMatchObject({ status: 404, url: `${server.origin}/models/no-such-model/config.json` });
  });

  it('a hub id without its token is refused with the status', async () => {
    const error = await loadEmbedder('nomic-ai/nomic-tiny', { backend: 'cpu', cache: false, endpoint: server.origin }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as DownloadError).status).toBe(401);
  });

  it('corrupted weights are a SafetensorsError naming the file, and nothing is cached for them under a good name', async () => {
    server.setFaults({ corrupt: ['/models/nomic-tiny/model.safetensors'] });
    try {
      const error = await loadEmbedder(model, { backend: 'cpu', cache: false }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SafetensorsError);
      expect((error as Error).message).toContain('model.safetensors');
    } finally {
      server.setFaults({});
    }
  });

  it('an aborted download rejects with a DownloadError at once', async () => {
    server.setFaults({ stall: { '/models/nomic-tiny/model.safetensors': 1000 } });
    try {
      const controller = new AbortController();
      const loading = loadEmbedder(model, {
        backend: 'cpu',
        cache: false,
        signal: controller.signal,
        onProgress: (file, loaded) => file === 'model.safetensors' && loaded > 0 && controller.abort(),
      });
      const error = await loading.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DownloadError);
      expect((error as Error).message).toMatch(/abort/);
    } finally {
      server.setFaults({});
    }
  });

  it('the backend starts while the files arrive; where it fails, the download stops and its error is the one thrown', async () => {
    const weights = '/models/nomic-tiny/model.safetensors';
    server.setFaults({ stall: { [weights]: 1000 } });
    // A WebGPU whose adapter request answers "none" once the weights have begun to arrive.
    const requested = server.count(weights);
    const gpu = {
      requestAdapter: async () => {
        while (server.count(weights) === requested) await new Promise((resolve) => setTimeout(resolve, 5));
        return null;
      },
    };
    vi.stubGlobal('navigator', { gpu });
    try {
      const error = await loadEmbedder(model, { backend: 'webgpu', cache: false }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BackendError);
      expect((error as Error).message).toMatch(/no WebGPU adapter/);
      expect(server.count(weights)).toBe(requested + 1);
      // The stalled answer's connection is closed by the abort, not left open.
      await vi.waitFor(() => expect(server.stalledAnswers()).toBe(0));
    } finally {
      vi.unstubAllGlobals();
      server.setFaults({});
    }
  });

  it('webgpu refuses q8 before anything is requested', async () => {
    const before = server.requests.length;
    await expect(loadEmbedder(model, { backend: 'webgpu', cache: false, dtype: 'q8' })).rejects.toThrow(/dtype.*q8.*webgpu has no q8 kernel/);
    expect(server.requests.length).toBe(before);
  });

  it('a load that fails once the weights are on the backend frees them', async () => {
    await tf.setBackend('cpu');
    const before = tf.memory().numTensors;
    await expect(loadEmbedder(`${server.origin}/broken/no-tokenizer/`, { backend: 'cpu', cache: false })).rejects.toThrow();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("q8: the projections as int8 codes, within the stated cosine of float32 (the README's bound)", async () => {
    const embedder = await loadEmbedder(model, { backend: 'cpu', cache: false, dtype: 'q8' });
    try {
      expect(embedder.dtype).toBe('q8');
      const { embeddings } = await embedder.embed(texts.map((t) => t.text));
      const cosines = texts.map((t, i) => cosine(embeddings[i], t.embedding));
      expect(cosines.reduce((a, b) => a + b, 0) / cosines.length).toBeGreaterThanOrEqual(0.999);
      expect(Math.min(...cosines)).toBeGreaterThanOrEqual(0.995);
      // Not float32 under another name: quantization moves the vectors.
      expect(cosines.some((c) => c < 0.99999)).toBe(true);
    } finally {
      await embedder.dispose();
    }
  });

  it('refuses an unknown option, an unknown dtype, and a cache that is not one', async () => {
    await expect(loadEmbedder(model, { backends: 'cpu' } as never)).rejects.toThrow(/backends/);
    await expect(loadEmbedder(model, { dtype: 'fp16' } as never)).rejects.toThrow(/dtype.*'fp32' or 'q8'.*fp16/);
    await expect(loadEmbedder(model, { cache: {} as never })).rejects.toThrow(/cache/);
  });
});

/** The two ends of a MessageChannel, standing in for a Worker and its global scope. */
function workerPair(): { worker: WorkerLike; transfers: ArrayBuffer[][] } {
  const { port1, port2 } = new MessageChannel();
  const transfers: ArrayBuffer[][] = [];
  const scope: MessageScope = {
    postMessage: (message, transfer = []) => {
      transfers.push(transfer);
      port1.postMessage(message, transfer);
    },
    addEventListener: (type, listener) => port1.on(type, (data) => listener({ data })),
  };
  serveEmbedder(scope);
  const listen = (port: MessagePort) => (type: string, listener: (event: never) => void) => {
    if (type === 'message') port.on('message', (data) => listener({ data } as never));
  };
  const worker: WorkerLike = { postMessage: (m) => port2.postMessage(m), addEventListener: listen(port2) as WorkerLike['addEventListener'], terminate: () => port2.close() };
  return { worker, transfers };
}

describe('the worker wrapper (a MessageChannel for the Worker)', () => {
  it('loads, reports, embeds with progress, and transfers the vectors rather than copying them', async () => {
    const { worker, transfers } = workerPair();
    const files: string[] = [];
    const embedder = await createEmbedderWorker(model, { backend: 'cpu', cache: false, onProgress: (file) => files.push(file) }, worker);
    try {
      expect(embedder).toMatchObject({ backend: 'cpu', modelName: 'nomic-tiny', dimensions: 64, dtype: 'fp32' });
      expect(files).toContain('model.safetensors');
      const done: number[] = [];
      const { embeddings, stats } = await embedder.embed(texts.map((t) => t.text), { maxBatchSize: 4, onProgress: (n) => done.push(n) });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `${t.name} embedding`));
      expect(stats.texts).toBe(texts.length);
      expect(done.at(-1)).toBe(texts.length);
      const sent = transfers.at(-1)!;
      expect(sent.length).toBeGreaterThan(0);
      // Transferred buffers are detached on the sending side.
      expect(sent.every((buffer) => buffer.byteLength === 0)).toBe(true);
    } finally {
      await embedder.dispose();
    }
  });

  it("the worker's errors arrive as this package's classes, and an aborted embed call rejects", async () => {
    const { worker } = workerPair();
    const missing = await createEmbedderWorker(`${server.origin}/models/none/`, { backend: 'cpu', cache: false }, worker).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(DownloadError);
    expect((missing as DownloadError).status).toBe(404);

    const embedder = await createEmbedderWorker(model, { backend: 'cpu', cache: false }, workerPair().worker);
    try {
      await expect(embedder.embed(['a'], { task: 'nope' as never })).rejects.toBeInstanceOf(InputError);
      const controller = new AbortController();
      controller.abort();
      await expect(embedder.embed(texts.map((t) => t.text), { signal: controller.signal })).rejects.toMatchObject({ name: 'CancelledError' });
      const midway = new AbortController();
      const call = embedder.embed(texts.map((t) => t.text), { maxBatchSize: 1, signal: midway.signal, onProgress: () => midway.abort() });
      await expect(call).rejects.toMatchObject({ name: 'CancelledError' });
    } finally {
      await embedder.dispose();
    }
    await expect(embedder.embed(['a'])).rejects.toMatchObject({ name: 'DisposedError' });
  });
});
