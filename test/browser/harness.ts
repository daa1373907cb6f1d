/**
 * The page side of test/browser.test.ts and scripts/bench-browser.ts, bundled
 * with the browser entry:
 * what the tests call through `page.evaluate(… window.harness …)`. Results
 * come back as plain data (vectors as arrays), errors as their class name,
 * whether they are this package's, and their fields.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../../src/browser/index.js';
import type { Embedder, PageLoadOptions, WorkerEmbedder } from '../../src/browser/index.js';
import { q8ProductKernel } from '../../src/backends/q8/wasm-q8.js';

let embedder: Embedder | WorkerEmbedder | undefined;

export interface ErrorReport {
  readonly name: string;
  readonly message: string;
  readonly ours: boolean;
  readonly status?: number;
}

function report(error: unknown): ErrorReport {
  const e = error as Error & { status?: number };
  return { name: e.name, message: e.message, ours: error instanceof lib.NomicEmbedError, status: e.status };
}

/** Loads with `load` in place of the last embedder, recording each progress call. */
async function loadWith(load: (source: string, options: PageLoadOptions) => Promise<Embedder | WorkerEmbedder>, source: string, options: PageLoadOptions) {
  await embedder?.dispose();
  const progress: [string, number, number | undefined][] = [];
  const loaded = await load(source, { ...options, onProgress: (f, l, t) => progress.push([f, l, t]) });
  embedder = loaded;
  return { backend: loaded.backend, dtype: loaded.dtype, device: loaded.device, threads: loaded.threads, modelName: loaded.modelName, isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated, progress };
}

const harness = {
  load: (source: string, options: PageLoadOptions = {}) => loadWith(lib.loadEmbedder, source, options),

  loadInWorker: (source: string, options: PageLoadOptions = {}) => loadWith(lib.createEmbedderWorker, source, options),

  /** The kernels one call runs on this thread's tfjs (not a worker's). */
  async kernelsOf(texts: string[]) {
    const info = await tf.profile(async () => void (await embedder!.embed(texts)));
    return [...new Set(info.kernels.map((k) => k.name))];
  },

  async embed(texts: string[], options: Parameters<Embedder['embed']>[1] = {}) {
    const { embeddings, stats } = await embedder!.embed(texts, options);
    return { embeddings: embeddings.map((v) => Array.from(v)), kinds: embeddings.map((v) => v.constructor.name), stats };
  },

  /** A load that must fail: its error as data. */
  async failedLoad(source: string, options: PageLoadOptions = {}): Promise<ErrorReport | 'loaded'> {
    try {
      const loaded = await lib.loadEmbedder(source, options);
      await loaded.dispose();
      return 'loaded';
    } catch (error) {
      return report(error);
    }
  },

  /** A load withdrawn once the weights have started to arrive. */
  async abortedLoad(source: string, options: PageLoadOptions = {}): Promise<ErrorReport | 'loaded'> {
    const controller = new AbortController();
    return harness.failedLoad(source, {
      ...options,
      signal: controller.signal,
      onProgress: (file, loaded) => file.endsWith('.safetensors') && loaded > 0 && controller.abort(),
    });
  },

  /** The URLs a Cache API cache holds. */
  async cachedUrls(name: string) {
    const cache = await (globalThis as unknown as { caches: { open(name: string): Promise<{ keys(): Promise<Request[]> }> } }).caches.open(name);
    return (await cache.keys()).map((request) => request.url);
  },

  async clearCache(name: string) {
    return (globalThis as unknown as { caches: { delete(name: string): Promise<boolean> } }).caches.delete(name);
  },

  /** Turns of the event loop (a 0 ms timer each) seen while `embed` runs: 0 when it shuts the thread out. */
  async ticksDuring(texts: string[], options: Parameters<Embedder['embed']>[1] = {}) {
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setTimeout(tick, 0);
    };
    setTimeout(tick, 0);
    await embedder!.embed(texts, options);
    running = false;
    return ticks;
  },

  /** Wall milliseconds of each of `rounds` calls embedding `texts` (the benchmark page's measure). */
  async timeEmbed(texts: string[], rounds: number, options: Parameters<Embedder['embed']>[1] = {}) {
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const start = performance.now();
      await embedder!.embed(texts, options);
      times.push(performance.now() - start);
    }
    return times;
  },

  /** A load timed in the page, from the call to an embedder ready (warm-up included), as Node's is timed. */
  async timeLoad(source: string, options: PageLoadOptions = {}) {
    await embedder?.dispose();
    embedder = undefined;
    const start = performance.now();
    embedder = await lib.loadEmbedder(source, options);
    return performance.now() - start;
  },

  async dispose() {
    await embedder?.dispose();
    embedder = undefined;
  },

  /** Which q8 product the page's wasm backend runs, once it has started. */
  q8Kernel: () => q8ProductKernel(),
};

(globalThis as { harness?: typeof harness }).harness = harness;
export type Harness = typeof harness;
