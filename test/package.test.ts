import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { cosine, expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const work = tempDir();
const app = join(work, 'app');

/** What a user gets from `npm install nomic-embed-tfjs`: the packed tarball installed into an empty project. */
describe('the published package', () => {
  let files: string[];
  let installed: string;

  beforeAll(async () => {
    // `npm test` has just built dist/; packing without scripts keeps prepack's rebuild from
    // removing it under the other test files that run the built command line.
    const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, maxBuffer: 1 << 26 });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    files = packed.files.map((f) => f.path);
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    // The registry is reachable, but the packages are in npm's cache already. One framework beside it,
    // as a LangChain user has: the adapters' other frameworks are optional peers, so none comes with it.
    const { devDependencies } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    const langchain = `@langchain/core@${devDependencies['@langchain/core']}`;
    await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, packed.filename), langchain], { cwd: app, maxBuffer: 1 << 26 });
    installed = join(app, 'node_modules', 'nomic-embed-tfjs');
  }, 300_000);

  it('is built before it is packed', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(scripts.prepack).toBe('npm run build');
    // A fresh build: nothing in dist/ from modules that no longer exist.
    expect(scripts.build).toMatch(/rmSync\('dist'/);
  });

  it('holds the built code, its sources, the licence and the README, and nothing of the repository besides', () => {
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/bin.js', 'dist/pool/worker.js', 'dist/adapters/langchain.js', 'dist/adapters/llamaindex.js', 'dist/adapters/ai-sdk.js', 'wasm/q8-kernels.wasm', 'wasm/q8-kernels-shared.wasm', 'LICENSE', 'README.md', 'package.json']) {
      expect(files).toContain(f);
    }
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('weights/') || f.startsWith('scripts/'))).toBe(false);
  });

  it('ships source maps that point at files it ships', () => {
    const maps = files.filter((f) => f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(10);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(installed, map), 'utf8')) as { sources: string[] };
      for (const source of sources) expect(existsSync(resolve(dirname(join(installed, map)), source)), `${map} → ${source}`).toBe(true);
    }
  });

  it('brings tfjs as peers, and neither libtensorflow build', () => {
    for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm']) {
      expect(existsSync(join(app, 'node_modules', pkg)), pkg).toBe(true);
    }
    // One tfjs engine: the package uses the application's, not a copy of its own.
    expect(existsSync(join(installed, 'node_modules', '@tensorflow'))).toBe(false);
    expect(readdirSync(join(app, 'node_modules', '@tensorflow'))).not.toContain('tfjs-node');
    expect(readdirSync(join(app, 'node_modules', '@tensorflow'))).not.toContain('tfjs-node-gpu');
  });

  it('loads its service dependencies only when a service starts: importing it to embed loads no web server or Redis client', async () => {
    const script = `
      import Module from 'node:module';
      const loaded = [];
      const load = Module._load;
      Module._load = function (request, ...rest) {
        loaded.push(request);
        return load.call(this, request, ...rest);
      };
      const library = await import('nomic-embed-tfjs');
      console.log(JSON.stringify({ loaded, exports: Object.keys(library) }));
    `;
    const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script], { cwd: app });
    const { loaded, exports } = JSON.parse(stdout) as { loaded: string[]; exports: string[] };
    // The hook sees CommonJS packages, which all of these are; tfjs is one too, so it sees the import at all.
    expect(loaded.some((r) => /tfjs-core/.test(r))).toBe(true);
    const service = /(^|\/node_modules\/)(fastify|@fastify\/cors|prom-client|bullmq|ioredis)(\/|$)/;
    expect(loaded.filter((r) => service.test(r))).toEqual([]);
    expect(exports).toEqual(expect.arrayContaining(['serve', 'startQueueWorker', 'submitEmbeddings', 'loadEmbedder']));
  });

  it('brings no framework of its adapters, and its LangChain adapter works beside @langchain/core alone', async () => {
    for (const pkg of ['@llamaindex/core', 'llamaindex', 'ai', '@ai-sdk/provider', 'langchain', '@langchain/classic']) {
      expect(existsSync(join(app, 'node_modules', pkg)), pkg).toBe(false);
    }
    const text = reference('nomic-tiny').texts[1].text;
    const script = `
      import { Embeddings } from '@langchain/core/embeddings';
      import { loadEmbedder } from 'nomic-embed-tfjs';
      import { NomicEmbeddings } from 'nomic-embed-tfjs/langchain';
      const model = ${JSON.stringify(fixtureDir('nomic-tiny'))};
      const embeddings = new NomicEmbeddings({ model, backend: 'wasm', threads: 1 });
      const query = await embeddings.embedQuery(${JSON.stringify(text)});
      const embedder = await loadEmbedder(model, { backend: 'wasm', threads: 1 });
      const { embeddings: [direct] } = await embedder.embed([${JSON.stringify(text)}], { task: 'search_query' });
      console.log(JSON.stringify({ subclass: embeddings instanceof Embeddings, query, direct: Array.from(direct) }));
      await Promise.all([embeddings.dispose(), embedder.dispose()]);
    `;
    // One thread: the threaded build's start hangs under --input-type=module (a limit the README states).
    const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script], { cwd: app, maxBuffer: 1 << 24 });
    const result = JSON.parse(stdout) as { subclass: boolean; query: number[]; direct: number[] };
    expect(result.subclass).toBe(true);
    expect(result.query).toEqual(result.direct);
  });

  it('npx nomic-embed --help works', async () => {
    const { stdout } = await exec('npx', ['--no-install', 'nomic-embed', '--help'], { cwd: app });
    expect(stdout).toMatch(/^usage: nomic-embed <command>/);
  });

  it('imports as a library and embeds like the reference, on worker threads from the built code', async () => {
    const texts = reference('nomic-tiny').texts.slice(0, 3);
    const script = `
      import { loadEmbedder } from 'nomic-embed-tfjs';
      const embedder = await loadEmbedder(${JSON.stringify(fixtureDir('nomic-tiny'))}, { backend: 'wasm', workers: 2 });
      const { embeddings } = await embedder.embed(${JSON.stringify(texts.map((t) => t.text))});
      console.log(JSON.stringify({ workers: embedder.workers, embeddings: embeddings.map((e) => Array.from(e)) }));
      await embedder.dispose();
    `;
    // Under --input-type and a V8 option, both of which a worker started from a file would choke on.
    const { stdout } = await exec(process.execPath, ['--max-old-space-size=4096', '--input-type=module', '-e', script], { cwd: app, maxBuffer: 1 << 24 });
    const result = JSON.parse(stdout) as { workers: number; embeddings: number[][] };
    expect(result.workers).toBe(2);
    texts.forEach((t, i) => expectClose(result.embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
  });

  it('finds its own q8 kernels in the installed package, on the main thread and in workers', async () => {
    const texts = reference('nomic-tiny').texts.slice(0, 3);
    const script = `
      import { loadEmbedder } from 'nomic-embed-tfjs';
      const out = [];
      for (const workers of [1, 2]) {
        const embedder = await loadEmbedder(${JSON.stringify(fixtureDir('nomic-tiny'))}, { backend: 'wasm', workers, threads: 1, dtype: 'q8' });
        const { embeddings } = await embedder.embed(${JSON.stringify(texts.map((t) => t.text))});
        out.push({ dtype: embedder.dtype, embeddings: embeddings.map((e) => Array.from(e)) });
        await embedder.dispose();
      }
      console.log(JSON.stringify(out));
    `;
    const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script], { cwd: app, maxBuffer: 1 << 24 });
    const runs = JSON.parse(stdout) as { dtype: string; embeddings: number[][] }[];
    for (const run of runs) {
      expect(run.dtype).toBe('q8');
      texts.forEach((t, i) => expect(cosine(run.embeddings[i], t.embedding), t.name).toBeGreaterThan(0.995));
    }
    // The same kernel on either thread (batches split otherwise among the workers, which moves float32 rounding only).
    runs[0].embeddings.forEach((e, i) => expect(cosine(e, runs[1].embeddings[i])).toBeGreaterThan(0.99999));
  });
});

