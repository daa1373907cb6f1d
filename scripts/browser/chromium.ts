/** Driving Debian's chromium for the browser tests and the browser benchmark. */
import { spawnSync } from 'node:child_process';
import { build, type Metafile } from 'esbuild';
import { launch, type Browser } from 'puppeteer-core';

/** Debian's chromium, as scripts/setup-chromium.sh installs it. */
export function chromiumPath(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

/**
 * Headless chromium by its executablePath (nothing downloads a browser).
 * `--no-sandbox`: the suite may run as root; `--enable-unsafe-webgpu`: WebGPU
 * on SwiftShader where there is no GPU, a fallback adapter.
 */
export function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (executablePath === undefined) throw new Error('no chromium on the PATH; run scripts/setup-chromium.sh');
  return launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-dev-shm-usage'],
  });
}

/**
 * The browser entry and its worker script bundled for a page, as a bundler
 * would: ES modules with shared chunks, in `outdir`'s `browser/` folder (so
 * the default `../../wasm/tfjs/` of the wasm files is the server's `/wasm/tfjs/`
 * when the bundle is served at `/<any>/browser/`). `pages`: more entries
 * (name: source), such as a test harness, sharing its chunks.
 */
export async function bundleBrowserEntry(outdir: string, pages: Record<string, string> = {}): Promise<Metafile> {
  const result = await build({
    entryPoints: { 'browser/index': 'src/browser/index.ts', 'browser/worker-entry': 'src/browser/worker-entry.ts', ...pages },
    chunkNames: 'browser/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    outdir,
    metafile: true,
    logLevel: 'silent',
  });
  return result.metafile;
}

/** The files an output loads before it runs: itself and, transitively, what it imports statically (not `import()`). */
export function eagerFiles(metafile: Metafile, output: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imported of metafile.outputs[file].imports) if (imported.kind === 'import-statement' && !imported.external) visit(imported.path);
  };
  visit(output);
  return [...seen];
}

export function eagerBytes(metafile: Metafile, output: string): number {
  return eagerFiles(metafile, output).reduce((sum, file) => sum + metafile.outputs[file].bytes, 0);
}
