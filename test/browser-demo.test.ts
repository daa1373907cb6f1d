import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startPageServer } from '../scripts/browser/page-server.js';
import { chromiumSuite, launchChromium } from './helpers/chromium.js';
import { FIXTURES } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The demo in examples/browser/, built with Vite as a user would build it
 * (its wasm files and its worker found by Vite from the package's
 * `new URL(…, import.meta.url)`), loaded in headless Chromium, queried, and
 * photographed (test-results/browser-demo.png).
 */

const SCREENSHOT = fileURLToPath(new URL('../test-results/browser-demo.png', import.meta.url));
const suite = chromiumSuite();

suite('the browser demo', () => {
  let server: Awaited<ReturnType<typeof startPageServer>>;
  const close: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    const out = tempDir();
    await build({ configFile: fileURLToPath(new URL('../examples/browser/vite.config.ts', import.meta.url)), logLevel: 'silent', build: { outDir: out, emptyOutDir: true } });
    server = await startPageServer({ '/': out, '/models/': FIXTURES });
    close.push(() => server.close());
  });
  afterAll(async () => {
    for (const step of close.reverse()) await step();
  });

  it('loads a model folder with progress, indexes its sentences, and answers a query with ranked, scored results', async () => {
    const browser = await launchChromium();
    close.push(() => browser.close());
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push((e as Error).message));
    page.on('console', (m) => m.type() === 'error' && !m.text().includes('404') && errors.push(m.text()));
    await page.setViewport({ width: 900, height: 800 });
    await page.goto(`${server.origin}/?model=/models/nomic-tiny/&backend=wasm`);
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 60_000 });
    expect(await page.$eval('#runtime', (e) => e.textContent)).toMatch(/^nomic-tiny on wasm, 2 threads/);
    expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/^Ready: \d{3} sentences indexed/);
    // The worker and the wasm files came from Vite's assets.
    expect(server.requests.some((r) => /\/assets\/worker-entry-[\w-]+\.js$/.test(r.path))).toBe(true);
    expect(server.requests.some((r) => /\/assets\/tfjs-backend-wasm-threaded-simd-[\w-]+\.wasm$/.test(r.path))).toBe(true);

    await page.type('#query', 'how do planets move across the sky');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="searched"]');
    const results = await page.$$eval('#results li', (items) => items.map((li) => ({ score: Number(li.querySelector('.score')!.textContent), text: li.textContent })));
    expect(results).toHaveLength(10);
    // Ranked best first (the tiny random model ranks by chance; the order is what the page must keep).
    expect(results.map((r) => r.score)).toEqual([...results.map((r) => r.score)].sort((a, b) => b - a));
    expect(results.every((r) => r.score >= -1 && r.score <= 1)).toBe(true);

    mkdirSync(fileURLToPath(new URL('../test-results/', import.meta.url)), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const png = readFileSync(SCREENSHOT);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.length).toBeGreaterThan(20_000);
    expect(errors).toEqual([]);
  });
});
