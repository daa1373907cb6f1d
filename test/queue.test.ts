import { Queue, QueueEvents } from 'bullmq';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { loadEmbedder } from '../src/embedder.js';
import { expectClose, fixtureDir, reference } from './helpers/fixtures.js';
import { freePort } from './helpers/free-port.js';
import { redisSuite, startRedis } from './helpers/redis.js';
import { tempDir } from './helpers/tmp.js';

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const MODEL = fixtureDir('nomic-tiny');
const work = tempDir();
const input = join(work, 'in.txt');
const base = reference('nomic-tiny').texts.map((t) => t.text.replace(/\n/g, ' ')).filter((t) => t.length > 0 && t.length < 200);
const texts = Array.from({ length: 500 }, (_, i) => `${base[i % base.length]} variant ${i}`);
/** The same texts in batches of other sizes: float32 rounding apart, the same vectors. */
const SAME = 1e-6;

let redis: Awaited<ReturnType<typeof startRedis>>;
let expected: Float32Array[];
const children: ChildProcess[] = [];
/** What each worker process has written to stderr so far. */
const workerErrors = new Map<ChildProcess, string>();
let queues = 0;

/** A worker process on `queue`; resolves once it takes jobs. */
function startWorker(queue: string, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'worker', '--redis', redis.url, '--queue', queue, '--model', MODEL, '--backend', 'wasm', '--threads', '1', '--lock-seconds', '2', ...extra]);
  children.push(child);
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the worker did not start:\n${stderr}`)), 60_000);
    child.stderr!.on('data', (d) => {
      stderr += d;
      workerErrors.set(child, stderr);
      if (stderr.includes('taking jobs')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => reject(new Error(`the worker exited with ${code}:\n${stderr}`)));
  });
}

/** Runs `nomic-embed submit`; `onStart` gets the process, to interrupt it. */
function submit(queue: string, output: string, extra: string[] = [], onStart?: (child: ChildProcess) => void, from = input) {
  const child = spawn(process.execPath, [BIN, 'submit', '--redis', redis.url, '--queue', queue, '--input', from, '--output', output, '--task', 'search_document', '--chunk-texts', '10', ...extra]);
  children.push(child);
  onStart?.(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

/** The output's vectors by index; every index at most once, in order. */
function readOutput(output: string): Map<number, number[]> {
  const rows = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; embedding: number[] });
  const indices = rows.map((r) => r.index);
  expect(indices).toEqual([...indices].sort((a, b) => a - b));
  expect(new Set(indices).size).toBe(indices.length);
  return new Map(rows.map((r) => [r.index, r.embedding]));
}

function expectAll(output: string): void {
  const rows = readOutput(output);
  expect(rows.size).toBe(texts.length);
  expected.forEach((v, i) => expectClose(rows.get(i)!, v, SAME, `text ${i}`));
}

/** Waits until the journal of an output records `chunks` written chunks. */
async function whenWritten(output: string, chunks: number): Promise<void> {
  const journal = `${output}.partial.json`;
  const deadline = Date.now() + 60_000;
  while (!(existsSync(journal) && (JSON.parse(readFileSync(journal, 'utf8')) as { written: number }).written >= chunks)) {
    if (Date.now() > deadline) throw new Error(`${chunks} chunks were not written within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function jobKeys(queue: string): Promise<string[]> {
  const client = new Redis(redis.url);
  try {
    const keys = await client.keys(`bull:${queue}:*`);
    // BullMQ's own bookkeeping stays; job hashes and their results must not.
    return keys.filter((k) => !/:(meta|events|id|stalled-check|marker)$/.test(k));
  } finally {
    client.disconnect();
  }
}

redisSuite()('embedding jobs on a Redis queue', () => {
  beforeAll(async () => {
    redis = await startRedis();
    writeFileSync(input, `${texts.join('\n')}\n`);
    const embedder = await loadEmbedder(MODEL, { backend: 'wasm', workers: 1 });
    expected = (await embedder.embed(texts, { task: 'search_document' })).embeddings;
    await embedder.dispose();
  });
  afterAll(() => redis.stop());
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
  });

  it('two workers and submit write what the library embeds, in order, and leave no result in Redis', async () => {
    const queue = `q${queues++}`;
    await Promise.all([startWorker(queue), startWorker(queue)]);
    const output = join(work, 'two.jsonl');
    const result = await submit(queue, output);
    expect(result.stderr).toMatch(/wrote 500 texts in 50 chunks/);
    // 50 jobs waited for at once is the design, not a leak to warn about.
    expect(result.stderr).not.toMatch(/MaxListenersExceededWarning/);
    expect(result.code).toBe(0);
    expectAll(output);
    expect(existsSync(`${output}.partial`)).toBe(false);
    expect(await jobKeys(queue)).toEqual([]);
  });

  it("carries long-text windows and their overlap to the workers, which embed as the library does", async () => {
    const queue = `q${queues++}`;
    await startWorker(queue, ['--max-length', '16']);
    const long = join(work, 'long.txt');
    const some = texts.slice(0, 20);
    writeFileSync(long, `${some.join('\n')}\n`);
    const output = join(work, 'long.jsonl');
    const result = await submit(queue, output, ['--long-text', 'mean', '--overlap', '4'], undefined, long);
    expect(result.code, result.stderr).toBe(0);
    const embedder = await loadEmbedder(MODEL, { backend: 'wasm', workers: 1, maxLength: 16 });
    try {
      const { embeddings, stats } = await embedder.embed(some, { task: 'search_document', longText: 'mean', overlap: 4 });
      expect(stats.windows).toBeGreaterThan(some.length);
      const rows = readOutput(output);
      embeddings.forEach((v, i) => expectClose(rows.get(i)!, v, SAME, `text ${i}`));
      // Without the overlap the vectors differ: the option did reach the workers.
      const plain = (await embedder.embed(some, { task: 'search_document', longText: 'mean' })).embeddings;
      expect(plain.some((v, i) => v.some((x, d) => Math.abs(x - rows.get(i)![d]) > 1e-4))).toBe(true);
    } finally {
      await embedder.dispose();
    }
  });

  it('loses nothing and duplicates nothing when a worker is killed mid-run', async () => {
    const queue = `q${queues++}`;
    const [doomed] = await Promise.all([startWorker(queue), startWorker(queue)]);
    const output = join(work, 'killed.jsonl');
    const running = submit(queue, output);
    await whenWritten(output, 5);
    doomed.kill('SIGKILL');
    const result = await running;
    expect(result.code).toBe(0);
    expectAll(output);
  });

  it('resumes an interrupted submit, keeping what it wrote', async () => {
    const queue = `q${queues++}`;
    await startWorker(queue);
    const output = join(work, 'resumed.jsonl');
    let submitter: ChildProcess | undefined;
    const first = submit(queue, output, [], (child) => (submitter = child));
    await whenWritten(output, 5);
    submitter!.kill('SIGKILL');
    expect((await first).signal).toBe('SIGKILL');
    expect(existsSync(output)).toBe(false);
    expect(existsSync(`${output}.partial`)).toBe(true);
    const second = await submit(queue, output);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/wrote 500 texts in 50 chunks to .*, \d+ of them written by an earlier run/);
    expectAll(output);
  });

  it('names the input lines of a chunk that keeps failing, writes the rest, and exits 1', async () => {
    const queue = `q${queues++}`;
    await startWorker(queue, ['--max-length', '64']);
    // One text of 381 tokens, on line 57, among a hundred short ones.
    const long = reference('nomic-tiny').texts.find((t) => t.name === 'long_paragraph')!.text.replace(/\n/g, ' ');
    const mixed = join(work, 'mixed.txt');
    writeFileSync(mixed, `${texts.slice(0, 100).map((t, i) => (i === 56 ? long : t)).join('\n')}\n`);
    const output = join(work, 'failing.jsonl');
    const result = await submit(queue, output, ['--truncation', 'error', '--attempts', '2'], undefined, mixed);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/lines 51-60 of .*mixed\.txt failed: texts\[6\] has (at least )?\d+ tokens, more than the maximum of 64/);
    const rows = readOutput(output);
    expect([...rows.keys()]).toEqual(Array.from({ length: 100 }, (_, i) => i).filter((i) => i < 50 || i >= 60));
    for (const [index, vector] of rows) expectClose(vector, expected[index], SAME, `text ${index}`);
  });

  it('goes on when Redis restarts mid-run: both workers reconnect, every text once, in order', async () => {
    const durable = await startRedis(undefined, tempDir());
    const saved = redis;
    redis = durable;
    try {
      const queue = `q${queues++}`;
      const workers = await Promise.all([startWorker(queue), startWorker(queue)]);
      const output = join(work, 'restart.jsonl');
      const running = submit(queue, output);
      await whenWritten(output, 5);
      // Down for longer than a reconnection attempt, while jobs are locked by both workers.
      await durable.restart(1500);
      const result = await running;
      expect(result.code, result.stderr).toBe(0);
      expectAll(output);
      // Each worker said it lost Redis, once, rather than once per reconnection attempt.
      for (const worker of workers) {
        const said = workerErrors.get(worker)!.match(/nomic-embed worker: Redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED .*\(retrying/g) ?? [];
        expect(said, workerErrors.get(worker)).toHaveLength(1);
      }
      // Each worker on its own takes jobs after the restart: the other is stopped meanwhile.
      const some = join(work, 'after-restart.txt');
      writeFileSync(some, `${texts.slice(0, 20).join('\n')}\n`);
      for (const [index, alone] of workers.entries()) {
        const other = workers[1 - index];
        other.kill('SIGSTOP');
        try {
          const again = await submit(queue, join(work, `after-restart-${index}.jsonl`), [], undefined, some);
          expect(again.code, again.stderr).toBe(0);
          expect(alone.exitCode).toBeNull();
        } finally {
          other.kill('SIGCONT');
        }
      }
    } finally {
      redis = saved;
      await durable.stop();
    }
  });

  it('stops with a clear error when Redis is full, and the same command goes on once it has room', async () => {
    const full = await startRedis();
    const saved = redis;
    redis = full;
    const client = new Redis(full.url);
    try {
      const queue = `q${queues++}`;
      // Texts of about 800 bytes, all 30 chunks queued at once: about 240 KB of jobs.
      const bulky = join(work, 'bulky.txt');
      const many = texts.slice(0, 300).map((t) => `${t} `.repeat(Math.ceil(800 / (t.length + 1))));
      writeFileSync(bulky, `${many.join('\n')}\n`);
      const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
      await client.config('SET', 'maxmemory-policy', 'noeviction');
      await client.config('SET', 'maxmemory', String(used + 100_000));
      const output = join(work, 'full.jsonl');
      const refused = await submit(queue, output, [], undefined, bulky);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^nomic-embed: error: Redis at redis:\/\/127\.0\.0\.1:\d+ refused to queue lines \d+-\d+ of .*bulky\.txt: OOM command not allowed when used memory > 'maxmemory'; Redis is out of memory/);
      // One line: not the command with its texts, not an unhandled rejection after it.
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(`${output}.partial`)).toBe(true);
      await client.config('SET', 'maxmemory', '0');
      await startWorker(queue);
      const again = await submit(queue, output, [], undefined, bulky);
      expect(again.code, again.stderr).toBe(0);
      const embedder = await loadEmbedder(MODEL, { backend: 'wasm', workers: 1 });
      try {
        const { embeddings } = await embedder.embed(many, { task: 'search_document' });
        const rows = readOutput(output);
        expect(rows.size).toBe(many.length);
        embeddings.forEach((v, i) => expectClose(rows.get(i)!, v, SAME, `text ${i}`));
      } finally {
        await embedder.dispose();
      }
    } finally {
      client.disconnect();
      redis = saved;
      await full.stop();
    }
  });

  it('fails a job of another format version at once, saying so', async () => {
    const queue = `q${queues++}`;
    await startWorker(queue);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const q = new Queue(queue, { connection });
    const events = new QueueEvents(queue, { connection: connection.duplicate() });
    try {
      // The worker fails the job at once: events must already be read, or its failure can pass unseen.
      await events.waitUntilReady();
      const job = await q.add('embed', { version: 99, texts: ['hello'] }, { attempts: 3 });
      await expect(job.waitUntilFinished(events)).rejects.toThrow(/job format version 99, but this worker reads version 1/);
      expect((await q.getJob(job.id!))!.attemptsMade).toBe(1);
    } finally {
      await events.close();
      await q.close();
      connection.disconnect();
    }
  });

  it('says which Redis it cannot reach, without the password', async () => {
    const port = await freePort();
    const output = join(work, 'unreachable.jsonl');
    const child = spawn(process.execPath, [BIN, 'submit', '--redis', `redis://user:secret@127.0.0.1:${port}`, '--input', input, '--output', output]);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`cannot reach Redis at redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port}`));
    expect(stderr).not.toMatch(/secret/);
  });
});
