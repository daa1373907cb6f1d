import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { OutOfMemoryError, WeightsError } from '../src/errors.js';
import type { BatchJob } from '../src/pipeline/batch-job.js';
import { expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';

const texts = reference('nomic-tiny-ntk').texts;

/** The pool's bookkeeping, read by the tests that kill workers. */
interface PoolInternals {
  slots: Set<{ worker: { terminate(): Promise<number> } }>;
  idle: unknown[];
}
const raw = texts.map((t) => t.text);

describe('worker pool', () => {
  let embedder: Embedder;
  let run: Embedder['runner']['run'];

  beforeAll(async () => {
    embedder = await loadEmbedder(fixtureDir('nomic-tiny-ntk'), { backend: 'wasm', workers: 2 });
    run = embedder.runner.run.bind(embedder.runner);
  });
  afterAll(() => embedder.dispose());

  it('runs two workers and keeps the model out of this thread', () => {
    expect(embedder.workers).toBe(2);
    expect(() => embedder.model).toThrow(/worker threads/);
  });

  it('matches the reference, in input order, with batches spread over the workers', async () => {
    const { embeddings, stats } = await embedder.embed(raw, { maxBatchSize: 3 });
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    expect(stats.batches).toBe(Math.ceil(texts.length / 3));
    expect(stats.measuredPeakBytes).toBeGreaterThan(0);
  });

  it('runs batches concurrently', async () => {
    let inFlight = 0;
    let most = 0;
    embedder.runner.run = async (job: BatchJob) => {
      most = Math.max(most, ++inFlight);
      try {
        return await run(job);
      } finally {
        inFlight--;
      }
    };
    try {
      await embedder.embed(raw, { maxBatchSize: 2 });
      expect(most).toBe(2);
    } finally {
      embedder.runner.run = run;
    }
  });

  it('backs off when a worker runs out of memory, and the results stay right', async () => {
    // The fault comes back from a real worker round trip: the job is sent, then the answer replaced.
    embedder.runner.run = async (job: BatchJob) => {
      const output = await run(job);
      if (job.sequences.length > 2) throw new Error('Aborted(Cannot enlarge memory arrays)');
      return output;
    };
    try {
      const { embeddings, stats } = await embedder.embed(raw, { maxBatchSize: 8 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.retries).toBeGreaterThan(0);
    } finally {
      embedder.runner.run = run;
    }
  });

  it('surfaces a worker error as an error of embed and names a text that never fits', async () => {
    embedder.runner.run = async () => {
      throw new Error('OOM when allocating tensor');
    };
    try {
      await expect(embedder.embed(raw)).rejects.toBeInstanceOf(OutOfMemoryError);
    } finally {
      embedder.runner.run = run;
    }
    // The pool still works afterwards.
    const { embeddings } = await embedder.embed(raw.slice(0, 2));
    expectClose(embeddings[1], texts[1].embedding, TOLERANCE.embedding, texts[1].name);
  });

  it('replaces an idle worker that died and goes on with both', async () => {
    const pool = embedder.runner as unknown as PoolInternals;
    const [first] = [...pool.slots];
    await first.worker.terminate();
    // Replaced once two workers are loaded and idle, neither of them the dead one.
    await expect.poll(() => pool.idle.length === 2 && !pool.slots.has(first), { timeout: 20_000 }).toBe(true);
    const { embeddings } = await embedder.embed(raw, { maxBatchSize: 2 });
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
  });

  it('fails the batch of a worker that dies mid-run with a clear error, then recovers', async () => {
    const pool = embedder.runner as unknown as PoolInternals;
    embedder.runner.run = async (job: BatchJob) => {
      const running = run(job);
      for (const slot of pool.slots) void slot.worker.terminate();
      return running;
    };
    try {
      await expect(embedder.embed(raw.slice(0, 2))).rejects.toThrow(/worker thread exited/);
    } finally {
      embedder.runner.run = run;
    }
    await expect.poll(() => pool.idle.length, { timeout: 20_000 }).toBe(2);
    const { embeddings } = await embedder.embed(raw);
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
  });

  it('rejects a broken checkpoint before starting workers', async () => {
    const { mkdirSync, copyFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = join(tmpdir(), `pool-broken-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(fixtureDir('nomic-tiny'), f), join(dir, f));
    const { writeSafetensors } = await import('../src/weights/safetensors.js');
    writeSafetensors(join(dir, 'model.safetensors'), []);
    writeFileSync(join(dir, 'unused'), '');
    await expect(loadEmbedder(dir, { backend: 'wasm', workers: 2 })).rejects.toBeInstanceOf(WeightsError);
  });
});

describe('disposing a pool', () => {
  it('ends every worker thread, and later calls say so', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 2 });
    const pool = embedder.runner as unknown as PoolInternals;
    const threads = [...pool.slots].map((s) => s.worker as unknown as { threadId: number });
    expect(threads.every((t) => t.threadId > 0)).toBe(true);
    await embedder.dispose();
    await embedder.dispose();
    expect(pool.slots.size).toBe(0);
    // A terminated worker reports threadId -1.
    expect(threads.every((t) => t.threadId === -1)).toBe(true);
    await expect(embedder.embed(['hello'])).rejects.toThrow(/disposed/);
  });
});

describe('batch planning for a pool', () => {
  it('gives every worker a batch when there are enough texts', async () => {
    const { BatchProcessor } = await import('../src/pipeline/batcher.js');
    const processor = new BatchProcessor({ maxBatchTokens: 1e6, maxBatchSize: 64, memoryBudgetBytes: Infinity }, () => 0);
    const lengths = Array.from({ length: 10 }, (_, i) => 20 + i);
    expect(processor.plan(lengths)).toHaveLength(1);
    const forTwo = processor.plan(lengths, 2);
    expect(forTwo.map((b) => b.indices.length)).toEqual([5, 5]);
    // Longest first, and each batch padded to its longest member.
    expect(forTwo[0].indices[0]).toBe(9);
    expect(forTwo.map((b) => b.length)).toEqual([29, 24]);
    expect(processor.plan([5], 4)).toHaveLength(1);
  });
});
