import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { bundleBrowserEntry, eagerBytes } from './helpers/chromium.js';
import { tempDir } from './helpers/tmp.js';

/** What a page's bundler makes of the browser entry: nothing of Node, and what it weighs. */
describe("the browser entry's bundle", () => {
  it('reaches no node: module and none of the Node-only code (CLI, server, queue, downloads to disk, worker threads)', async () => {
    // platform browser with nothing external: a Node built-in anywhere in the graph fails the build.
    const result = await build({ entryPoints: ['src/browser/index.ts', 'src/browser/worker-entry.ts'], bundle: true, write: false, platform: 'browser', format: 'esm', outdir: tempDir(), metafile: true, logLevel: 'silent' });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((path) => path.startsWith('node:'))).toEqual([]);
    const nodeOnly = /^src\/(cli|server|queue|adapters)\/|^src\/(embedder|index)\.ts$|^src\/pool\/(worker|worker-pool)\.ts$|^src\/download\/(pull|remote-file|model-cache)\.ts$|^src\/weights\/(safetensors-file|convert|layout-cache)\.ts$|wasm-threads|resident-memory|gpu-devices/;
    expect(inputs.filter((path) => nodeOnly.test(path))).toEqual([]);
    for (const file of result.outputFiles) expect(file.text).not.toMatch(/from\s*["']node:|require\(["']node:/);
  });

  it('the package resolves to it under the browser condition', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    expect(pkg.exports['.'].browser).toEqual({ types: './dist/browser/index.d.ts', default: './dist/browser/index.js' });
    expect(Object.keys(pkg.exports['.'])[0]).toBe('browser');
  });

  it('weighs, minified, for a page on wasm only: WebGPU is a chunk loaded only when asked for', async () => {
    const out = tempDir();
    const metafile = await bundleBrowserEntry(out);
    const entry = Object.keys(metafile.outputs).find((f) => f.endsWith('browser/index.js'))!;
    const eager = eagerBytes(metafile, entry);
    const all = Object.values(metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
    console.log(`browser bundle: ${(eager / 1024).toFixed(0)} KiB loaded for wasm, ${(all / 1024).toFixed(0)} KiB in all (minified, before compression; the .wasm files are extra)`);
    // tfjs-core, -backend-cpu and -backend-wasm and the tokenizer; tfjs-backend-webgpu (about 0.3 MB) stays out.
    expect(eager).toBeLessThan(all - 250_000);
  });
});
