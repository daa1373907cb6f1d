/**
 * npm run bench:browser [-- --texts 64 --rounds 5 --loads 3 --dtype fp32|q8]
 *
 * The browser entry in headless Chromium against Node, on the same machine in
 * one run, on the full-size random checkpoint (weights/bench-random):
 * - wasm throughput: `--texts` texts of 128 tokens (set a), the median of
 *   `--rounds` calls, in Node (all cores, the threaded build) and in a cross-
 *   origin isolated page (all cores);
 * - load: a start as users meet it, the median of `--loads`: Node's
 *   `loadEmbedder` from disk in a fresh process (once the runtime layout is
 *   written) against the page's from the Cache API in a fresh page (once
 *   the first load has filled it), both timed from the call to an embedder
 *   ready (backend start and warm-up included); the first page load, over
 *   loopback HTTP, for reference;
 * - the bundle a page on wasm loads, minified and gzipped.
 * Prints the ratios and writes JSON to bench-results/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { Harness } from '../test/browser/harness.js';
import { loadEmbedder } from '../src/embedder.js';
import { ensureQ8Checkpoint, ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { DTYPES, type Dtype } from '../src/model/projection.js';
import { q8ProductKernel } from '../src/backends/q8/wasm-q8.js';
import { loadSet } from './bench/sets.js';
import { bundleBrowserEntry, eagerBytes, eagerFiles, launchChromium } from './browser/chromium.js';
import { startPageServer } from './browser/page-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: { texts: { type: 'string', default: '64' }, rounds: { type: 'string', default: '5' }, loads: { type: 'string', default: '3' }, dtype: { type: 'string', default: 'fp32' } },
});
const dtype = values.dtype as Dtype;
if (!DTYPES.includes(dtype)) throw new Error(`--dtype is one of ${DTYPES.join(', ')}, not '${values.dtype}'`);
const count = Number(values.texts);
const rounds = Number(values.rounds);
const loads = Number(values.loads);
const cores = availableParallelism();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const fp32Model = ensureRandomCheckpoint(`${ROOT}weights/bench-random`, `${ROOT}test/fixtures/nomic-embed-text-v1.5/tokenizer.json`);
// q8 from the converter's q8 checkpoint of the same weights, in Node and in the page alike.
const model = dtype === 'q8' ? ensureQ8Checkpoint(fp32Model, `${ROOT}weights/bench-random-q8`) : fp32Model;
const texts = loadSet('a').slice(0, count);

// Node: wasm, one worker on every core (the threaded build), as the page runs.
// The first load may write the runtime layout once; the later ones are what a user's every later start costs.
await (await loadEmbedder(model, { backend: 'wasm', workers: 1, threads: cores, dtype })).dispose();
const nodeLoadTimes: number[] = [];
for (let i = 0; i < loads; i++) {
  const child = spawnSync('npx', ['tsx', `${ROOT}scripts/bench/time-load.ts`, model, String(cores), dtype], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`a timed Node load failed: ${child.stderr}`);
  nodeLoadTimes.push((JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { ms: number }).ms);
}
const nodeLoadMs = median(nodeLoadTimes);
const node = await loadEmbedder(model, { backend: 'wasm', workers: 1, threads: cores, dtype });
const nodeTimes: number[] = [];
await node.embed(texts);
for (let i = 0; i < rounds; i++) {
  const start = performance.now();
  await node.embed(texts);
  nodeTimes.push(performance.now() - start);
}
await node.dispose();

// The page: the test harness's bundle, served cross-origin isolated.
const app = `${ROOT}bench-results/browser-app/`;
mkdirSync(app, { recursive: true });
const metafile = await bundleBrowserEntry(app, { 'browser/harness': 'test/browser/harness.ts' });
writeFileSync(`${app}index.html`, '<!doctype html><meta charset="utf-8"><title>bench</title><script type="module" src="browser/harness.js"></script>');
const server = await startPageServer({ '/app/': app, '/wasm/': `${ROOT}wasm/`, '/models/': `${ROOT}weights/` });
const browser = await launchChromium();
const openPage = async () => {
  const opened = await browser.newPage();
  await opened.goto(`${server.origin}/app/index.html`);
  await opened.waitForFunction(() => 'harness' in globalThis);
  return opened;
};
let page = await openPage();
const call = <K extends keyof Harness>(name: K, ...args: Parameters<Harness[K]>): Promise<Awaited<ReturnType<Harness[K]>>> =>
  page.evaluate((n, a) => (globalThis as unknown as { harness: Record<string, (...x: unknown[]) => unknown> }).harness[n](...a), name, args as unknown[]) as never;

const url = dtype === 'q8' ? '/models/bench-random-q8/' : '/models/bench-random/';
await call('clearCache', 'bench');
const pageFirstLoadMs = await call('timeLoad', url, { backend: 'wasm', cache: 'bench', dtype });
const weightRequests = server.count('/model.safetensors');
const pageLoadTimes: number[] = [];
for (let i = 0; i < loads; i++) {
  // A fresh page, as a reload is: its own tfjs, backend and kernels to start; the same cache.
  await page.close();
  page = await openPage();
  pageLoadTimes.push(await call('timeLoad', url, { backend: 'wasm', cache: 'bench', dtype }));
}
const pageCacheLoadMs = median(pageLoadTimes);
if (server.count('/model.safetensors') !== weightRequests) throw new Error('a load from the cache requested the weights again');
const threads = (await call('load', url, { backend: 'wasm', cache: 'bench', dtype })).threads;
const pageQ8Kernel = dtype === 'q8' ? await call('q8Kernel') : undefined;
await call('timeEmbed', texts, 1);
const pageTimes = await call('timeEmbed', texts, rounds);
await call('dispose');
await browser.close();
await server.close();

const entry = Object.keys(metafile.outputs).find((f) => f.endsWith('browser/index.js'))!;
const eager = eagerBytes(metafile, entry);
const files = eagerFiles(metafile, entry);
const gzip = files.reduce((sum, f) => sum + gzipSync(readFileSync(f)).length, 0);
const wasmFile = readFileSync(`${ROOT}wasm/tfjs/tfjs-backend-wasm-threaded-simd.wasm`);

const nodeRate = (count * 1000) / median(nodeTimes);
const pageRate = (count * 1000) / median(pageTimes);
const results = {
  machine: { cores },
  texts: count,
  tokensPerText: 128,
  dtype,
  q8Kernels: dtype === 'q8' ? { node: q8ProductKernel(), chromium: pageQ8Kernel } : undefined,
  rounds,
  node: { threads: cores, textsPerSecond: nodeRate, loadMs: nodeLoadMs, loadTimes: nodeLoadTimes, times: nodeTimes },
  chromium: { threads, textsPerSecond: pageRate, firstLoadMs: pageFirstLoadMs, cacheLoadMs: pageCacheLoadMs, cacheLoadTimes: pageLoadTimes, times: pageTimes },
  ratios: { throughput: pageRate / nodeRate, cacheLoadOverNodeLoad: pageCacheLoadMs / nodeLoadMs },
  bundle: { eagerBytes: eager, eagerFiles: files, gzipBytes: gzip, threadedWasmBytes: wasmFile.length, threadedWasmGzipBytes: gzipSync(wasmFile).length },
};
console.log(`wasm ${dtype}, ${count} × 128 tokens, median of ${rounds}: Node ${nodeRate.toFixed(1)} texts/s (${cores} threads), Chromium ${pageRate.toFixed(1)} texts/s (${threads} threads): ${results.ratios.throughput.toFixed(2)}× (target ≥ 0.8×)`);
const seconds = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ');
console.log(`load, median of ${loads} starts: Node from disk in a fresh process ${(nodeLoadMs / 1000).toFixed(2)} s (${seconds(nodeLoadTimes)}), Chromium from the Cache API in a fresh page ${(pageCacheLoadMs / 1000).toFixed(2)} s (${seconds(pageLoadTimes)}): ${results.ratios.cacheLoadOverNodeLoad.toFixed(2)}× (target ≤ 1.5×); the first page load over loopback HTTP ${(pageFirstLoadMs / 1000).toFixed(2)} s`);
console.log(`bundle for a page on wasm: ${(eager / 1024).toFixed(0)} KiB minified, ${(gzip / 1024).toFixed(0)} KiB gzipped, plus the threaded .wasm ${(wasmFile.length / 1024).toFixed(0)} KiB (${(gzipSync(wasmFile).length / 1024).toFixed(0)} KiB gzipped)`);
mkdirSync(`${ROOT}bench-results`, { recursive: true });
const out = `${ROOT}bench-results/browser-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${out}`);
