import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Harness } from './browser/harness.js';
import { bundleBrowserEntry, chromiumSuite, launchChromium } from './helpers/chromium.js';
import { cosine, expectClose, FIXTURE_NAMES, FIXTURES, reference, TOLERANCE } from './helpers/fixtures.js';
import { startPageServer } from '../scripts/browser/page-server.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The browser entry in a real headless Chromium (Debian's, by its
 * executablePath), on pages served cross-origin isolated: parity on each
 * backend, the Cache API round trip, failures as typed errors, the worker.
 */

const WASM = fileURLToPath(new URL('../wasm/', import.meta.url));
const suite = chromiumSuite();

suite('in headless Chromium', () => {
  let server: Awaited<ReturnType<typeof startPageServer>>;
  let browser: Browser;
  let page: Page;
  let model: (fixture: string) => string;
  const consoleLines: string[] = [];

  /** Calls the page's harness (test/browser/harness.ts). */
  const call = <K extends keyof Harness>(name: K, ...args: Parameters<Harness[K]>): Promise<Awaited<ReturnType<Harness[K]>>> =>
    page.evaluate((n, a) => (globalThis as unknown as { harness: Record<string, (...x: unknown[]) => unknown> }).harness[n](...a), name, args as unknown[]) as never;

  beforeAll(async () => {
    const app = tempDir();
    await bundleBrowserEntry(app, { 'browser/harness': 'test/browser/harness.ts' });
    writeFileSync(`${app}/index.html`, '<!doctype html><meta charset="utf-8"><title>harness</title><script type="module" src="browser/harness.js"></script>');
    server = await startPageServer({ '/app/': app, '/wasm/': WASM, '/models/': FIXTURES }, { hubFolder: `${FIXTURES}nomic-tiny` });
    model = (fixture) => `/models/${fixture}/`;
    browser = await launchChromium();
    page = await browser.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${(e as Error).message}`));
    await page.goto(`${server.origin}/app/index.html`);
    await page.waitForFunction(() => 'harness' in globalThis);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it.each(['wasm', 'cpu', 'webgpu'] as const)('%s: matches the reference on both fixtures', async (backend) => {
    for (const fixture of FIXTURE_NAMES) {
      const loaded = await call('load', model(fixture), { backend, cache: false });
      expect(loaded.backend, consoleLines.join('\n')).toBe(backend);
      const texts = reference(fixture).texts;
      const { embeddings } = await call('embed', texts.map((t) => t.text));
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `${backend} ${fixture} ${t.name} embedding`));
      if (backend === 'wasm') {
        // The slow backends (cpu, and webgpu on SwiftShader) check the normalised vector only.
        const pooled = (await call('embed', texts.map((t) => t.text), { normalize: false })).embeddings;
        texts.forEach((t, i) => expectClose(pooled[i], t.mean_pooled, TOLERANCE.meanPooled, `${backend} ${fixture} ${t.name} mean_pooled`));
      }
      if (backend === 'webgpu') expect(loaded.device).toMatchObject({ software: true });
      if (backend === 'wasm') {
        // Cross-origin isolated: tfjs takes its threaded build.
        expect(loaded.isolated).toBe(true);
        expect(loaded.threads).toBeGreaterThan(1);
        // The projections run on our product kernel, as in Node, not on tfjs's matMul.
        const kernels = await call('kernelsOf', [texts[0].text]);
        expect(kernels).toContain('NomicF32MatMul');
      }
    }
    await call('dispose');
  });

  it("wasm q8: our int8 kernel on every thread, on relaxed SIMD, within the stated cosine of float32; webgpu refuses it before downloading", async () => {
    const loaded = await call('load', model('nomic-tiny'), { backend: 'wasm', cache: false, dtype: 'q8' });
    expect(loaded.dtype).toBe('q8');
    const texts = reference('nomic-tiny').texts;
    const { embeddings } = await call('embed', texts.map((t) => t.text));
    const cosines = texts.map((t, i) => cosine(embeddings[i], t.embedding));
    expect(cosines.reduce((a, b) => a + b, 0) / cosines.length).toBeGreaterThanOrEqual(0.999);
    expect(Math.min(...cosines)).toBeGreaterThanOrEqual(0.995);
    expect(cosines.some((c) => c < 0.99999)).toBe(true);
    expect(await call('kernelsOf', [texts[0].text])).toContain('NomicQ8MatMul');
    // Chromium has relaxed SIMD and computes it exactly: the probe passes and the race picks the faster product (relaxed, where VNNI runs it).
    const kernel = await call('q8Kernel');
    expect(kernel).toEqual({ simd: expect.any(String), rates: { relaxed: expect.any(Number), baseline: expect.any(Number) }, ...(kernel.simd === 'baseline' ? { why: expect.any(String) } : {}) });
    expect(kernel.simd).toBe(kernel.rates!.relaxed > kernel.rates!.baseline ? 'relaxed' : 'baseline');
    await call('dispose');
    const weights = '/models/nomic-tiny/model.safetensors';
    const before = server.count(weights);
    expect(await call('failedLoad', model('nomic-tiny'), { backend: 'webgpu', cache: false, dtype: 'q8' })).toMatchObject({ name: 'ConfigError', ours: true, message: expect.stringMatching(/q8/) });
    expect(server.count(weights)).toBe(before);
  });

  it('auto passes over the software adapter and runs wasm', async () => {
    const loaded = await call('load', model('nomic-tiny'), { cache: false });
    expect(loaded.backend).toBe('wasm');
    await call('dispose');
  });

  it('the wasm files are found where the package keeps them, with no wasmPaths', async () => {
    const before = server.count('.wasm');
    await call('load', model('nomic-tiny'), { backend: 'wasm', cache: false });
    // The backend started in an earlier test; a fresh page fetches one build.
    const fresh = await browser.newPage();
    try {
      await fresh.goto(`${server.origin}/app/index.html`);
      await fresh.waitForFunction(() => 'harness' in globalThis);
      const loaded = await fresh.evaluate((m) => (globalThis as unknown as { harness: Harness }).harness.load(m, { backend: 'wasm', cache: false }), model('nomic-tiny'));
      expect(loaded.backend).toBe('wasm');
      expect(server.requests.slice(before).filter((r) => r.path.endsWith('.wasm')).map((r) => r.path)).toContain('/wasm/tfjs/tfjs-backend-wasm-threaded-simd.wasm');
      expect(server.requests.slice(before).map((r) => r.path)).toContain('/wasm/q8-kernels-shared.wasm');
      expect(server.requests.slice(before).map((r) => r.path)).toContain('/wasm/q8-kernels-relaxed-shared.wasm');
    } finally {
      await fresh.close();
      await call('dispose');
    }
  });

  it('a second load from the Cache API makes no request for the weights, and embeds alike', async () => {
    await call('clearCache', 'round-trip');
    const weights = '/models/nomic-tiny/model.safetensors';
    const before = server.count(weights);
    const first = await call('load', model('nomic-tiny'), { backend: 'wasm', cache: 'round-trip' });
    const a = await call('embed', [reference('nomic-tiny').texts[0].text]);
    expect(server.count(weights)).toBe(before + 1);
    const kernelFetches = server.count('q8-kernels');
    const second = await call('load', model('nomic-tiny'), { backend: 'wasm', cache: 'round-trip' });
    // A later load in the page finds our kernels running: no second module, no second set of helpers.
    expect(server.count('q8-kernels')).toBe(kernelFetches);
    const b = await call('embed', [reference('nomic-tiny').texts[0].text]);
    expect(server.count(weights)).toBe(before + 1);
    expect(b.embeddings).toEqual(a.embeddings);
    // The weights are kept in the runtime layout only, not also as the original file.
    const kept = (await call('cachedUrls', 'round-trip')).filter((url) => url.includes('model.safetensors')).map((url) => new URL(url).pathname + new URL(url).search);
    expect(kept).toEqual([`${weights}?nomic-embed-layout=runtime-1`]);
    // Progress is reported from the cache as from the network: every byte.
    for (const loaded of [first, second]) {
      const last = loaded.progress.filter(([file]) => file === 'model.safetensors').at(-1)!;
      expect(last[1]).toBe(last[2]);
    }
    await call('dispose');
  });

  it('a hub id loads through the redirect to another origin', async () => {
    const loaded = await call('load', 'nomic-ai/nomic-tiny', { backend: 'wasm', cache: false, endpoint: server.origin, token: 'hf_token' });
    expect(loaded.modelName).toBe('nomic-tiny');
    const { embeddings } = await call('embed', [reference('nomic-tiny').texts[0].text]);
    expectClose(embeddings[0], reference('nomic-tiny').texts[0].embedding, TOLERANCE.embedding, 'hub embedding');
    // The browser drops Authorization on the redirect to another origin; the CDN would refuse it.
    const cdn = server.requests.filter((r) => r.path.startsWith('/cdn/'));
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.authorization === undefined)).toBe(true);
    await call('dispose');
  });

  it('a missing folder, corrupted weights and an aborted download are typed errors', async () => {
    expect(await call('failedLoad', '/models/no-such-model/', { backend: 'wasm', cache: false })).toMatchObject({ name: 'DownloadError', ours: true, status: 404 });
    server.setFaults({ corrupt: ['/models/nomic-tiny/model.safetensors'], stall: { '/models/nomic-tiny-ntk/model.safetensors': 4096 } });
    try {
      const corrupt = await call('failedLoad', model('nomic-tiny'), { backend: 'wasm', cache: false });
      expect(corrupt).toMatchObject({ name: 'SafetensorsError', ours: true });
      expect((corrupt as { message: string }).message).toContain('model.safetensors');
      expect(await call('abortedLoad', model('nomic-tiny-ntk'), { backend: 'wasm', cache: false })).toMatchObject({ name: 'DownloadError', ours: true, message: expect.stringMatching(/abort/) });
    } finally {
      server.setFaults({});
    }
  });

  it('the worker wrapper matches the reference, and the page keeps running while it embeds', async () => {
    const loaded = await call('loadInWorker', model('nomic-tiny'), { backend: 'wasm', cache: false });
    expect(loaded).toMatchObject({ backend: 'wasm', modelName: 'nomic-tiny' });
    const texts = reference('nomic-tiny').texts;
    const { embeddings, kinds } = await call('embed', texts.map((t) => t.text));
    expect(new Set(kinds)).toEqual(new Set(['Float32Array']));
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `worker ${t.name} embedding`));
    const many = Array.from({ length: 256 }, (_, i) => `${texts[i % texts.length].text} ${i}`);
    expect(await call('ticksDuring', many, { maxBatchSize: 8 })).toBeGreaterThan(3);
    await call('dispose');
  });

  it('on the main thread, a long call lets the page have turns between batches', async () => {
    await call('load', model('nomic-tiny'), { backend: 'wasm', cache: false });
    const texts = reference('nomic-tiny').texts;
    const many = Array.from({ length: 256 }, (_, i) => `${texts[i % texts.length].text} ${i}`);
    expect(await call('ticksDuring', many, { maxBatchSize: 8 })).toBeGreaterThan(3);
    await call('dispose');
  });
});
