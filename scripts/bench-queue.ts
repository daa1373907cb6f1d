/**
 * npm run bench:queue [-- --texts 64 --chunk-texts 16]
 *
 * The Redis queue against the library, on the full-size random checkpoint and
 * the 128-token benchmark texts: texts/s of the library alone (one process,
 * its threads), then of `submit` with one worker process (its threads) and
 * with two (a thread each, so that the two share the cores instead of
 * spinning against each other). Needs redis-server (scripts/setup-redis.sh);
 * it starts its own on a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadEmbedder } from '../src/embedder.js';
import { submitEmbeddings } from '../src/queue/submit.js';
import { startRedis } from '../test/helpers/redis.js';
import { ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { loadSet } from './bench/sets.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { texts: { type: 'string', default: '64' }, 'chunk-texts': { type: 'string', default: '16' } } });
const model = ensureRandomCheckpoint(`${ROOT}weights/bench-random`, `${ROOT}test/fixtures/nomic-embed-text-v1.5/tokenizer.json`);
const texts = loadSet('a').slice(0, Number(values.texts));
const work = mkdtempSync(join(tmpdir(), 'nomic-embed-bench-queue-'));
const input = join(work, 'texts.txt');
writeFileSync(input, `${texts.join('\n')}\n`);
const cores = availableParallelism();

const chunkTexts = Number(values['chunk-texts']);
const embedder = await loadEmbedder(model, { backend: 'wasm' });
let started = performance.now();
await embedder.embed(texts);
const library = texts.length / ((performance.now() - started) / 1000);
// The same texts in the chunks the queue's jobs hold: the same batches, without the queue.
started = performance.now();
for (let i = 0; i < texts.length; i += chunkTexts) await embedder.embed(texts.slice(i, i + chunkTexts));
const libraryChunked = texts.length / ((performance.now() - started) / 1000);
await embedder.dispose();
console.error(`library: ${library.toFixed(2)} texts/s in one call, ${libraryChunked.toFixed(2)} in chunks of ${chunkTexts}`);

const redis = await startRedis();
const runs: { workers: number; threads: number; textsPerSecond: number }[] = [];
try {
  for (const [workers, threads] of [[1, cores], [2, Math.max(1, Math.floor(cores / 2))]]) {
    const queue = `bench-${workers}`;
    const processes = await Promise.all(Array.from({ length: workers }, () => startWorker(queue, threads)));
    started = performance.now();
    await submitEmbeddings({ redis: redis.url, queue, input, output: join(work, `out-${workers}.jsonl`), chunkTexts });
    const textsPerSecond = texts.length / ((performance.now() - started) / 1000);
    runs.push({ workers, threads, textsPerSecond });
    console.error(`${workers} worker process(es) × ${threads} thread(s): ${textsPerSecond.toFixed(2)} texts/s`);
    for (const p of processes) p.kill('SIGTERM');
  }
} finally {
  await redis.stop();
  rmSync(work, { recursive: true, force: true });
}

console.log(`library alone: ${library.toFixed(2)} texts/s in one call, ${libraryChunked.toFixed(2)} texts/s in calls of ${chunkTexts} (${texts.length} texts of 128 tokens)`);
for (const r of runs) {
  console.log(`${r.workers} worker process${r.workers > 1 ? 'es' : ''} × ${r.threads} thread${r.threads > 1 ? 's' : ''}: ${r.textsPerSecond.toFixed(2)} texts/s, ${(r.textsPerSecond / library).toFixed(2)}× the library`);
}
console.log(
  `queue overhead at one worker: ${((1 - runs[0].textsPerSecond / library) * 100).toFixed(1)}% against one library call, ` +
    `${((1 - runs[0].textsPerSecond / libraryChunked) * 100).toFixed(1)}% against the same chunks (target ≤ 10%)`,
);

function startWorker(queue: string, threads: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', `${ROOT}src/cli/bin.ts`, 'worker', '--redis', redis.url, '--queue', queue, '--model', model, '--backend', 'wasm', '--threads', String(threads)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (stderr.includes('taking jobs')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`a worker exited with ${code}:\n${stderr}`)));
  });
}
