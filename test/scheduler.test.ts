import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Embedder } from '../src/embedder.js';
import { OutOfMemoryError } from '../src/errors.js';
import { CancelledError, EmbeddingScheduler, QueueFullError, RequestTooLargeError } from '../src/server/scheduler.js';

/**
 * A stand-in embedder: records each batch (as the lengths of its texts) and answers with [length] vectors when
 * released. It keeps `inFlight` batches in flight, as an embedder with that many workers, or a GPU's two, does.
 */
function fakeEmbedder(inFlight = 1) {
  const batches: number[][] = [];
  const pending: (() => void)[] = [];
  let fail: ((lengths: number[]) => Error | undefined) | undefined;
  const embedder = {
    config: { n_embd: 1 },
    batchesInFlight: inFlight,
    embedSequences: (sequences: readonly Int32Array[]) => {
      const lengths = sequences.map((s) => s.length);
      batches.push(lengths);
      return new Promise((resolve, reject) => {
        pending.push(() => {
          const error = fail?.(lengths);
          if (error !== undefined) return reject(error);
          resolve({
            vectors: sequences.map((s) => Float32Array.of(s[0])),
            stats: { tokens: lengths.reduce((a, b) => a + b, 0), paddedTokens: lengths.length * Math.max(...lengths) },
          });
        });
      });
    },
  };
  return {
    embedder: embedder as unknown as Embedder,
    batches,
    /** Lets the oldest running batch finish. */
    finishOne: async () => {
      pending.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    },
    failWith: (f: (lengths: number[]) => Error | undefined) => (fail = f),
  };
}

/** A text of `length` tokens whose first id names it. */
const text = (id: number, length: number) => Int32Array.from({ length }, (_, i) => (i === 0 ? id : 5));
const limits = { maxBatchTokens: 64, maxBatchSize: 4, memoryBudgetBytes: Infinity };

afterEach(() => vi.useRealTimers());

describe('the cross-request scheduler', () => {
  it('gives a small request a place among the first batches, not after a large one', async () => {
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 10_000, batchWaitMs: 0 });
    const large = scheduler.submit(Array.from({ length: 40 }, (_, i) => text(100 + i, 8)));
    const small = scheduler.submit([text(7, 8)]);
    let smallDone = false;
    void small.then(() => (smallDone = true));
    await fake.finishOne();
    await fake.finishOne();
    expect(smallDone).toBe(true);
    expect((await small).map((v) => v[0])).toEqual([7]);
    while (fake.batches.length < 11) await fake.finishOne();
    await fake.finishOne();
    expect((await large).map((v) => v[0])).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
  });

  it('keeps as many batches in flight as the embedder does, and no more', async () => {
    const fake = fakeEmbedder(2);
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 10_000, batchWaitMs: 0 });
    const done = scheduler.submit(Array.from({ length: 12 }, (_, i) => text(i, 16)));
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.batches.length).toBe(2);
    await fake.finishOne();
    // Three batches of four texts in all.
    expect(fake.batches.length).toBe(3);
    await fake.finishOne();
    await fake.finishOne();
    expect((await done).map((v) => v[0])).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('puts texts of similar length together, within the token budget', async () => {
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 10_000, batchWaitMs: 0 });
    // The first batch runs alone; the rest queue behind it.
    const first = scheduler.submit([text(1, 4)]);
    const mixed = scheduler.submit([text(2, 30), text(3, 4), text(4, 30), text(5, 4), text(6, 4)]);
    while (fake.batches.length < 3) await fake.finishOne();
    expect(fake.batches).toEqual([[4], [30, 30], [4, 4, 4]]);
    await fake.finishOne();
    await first;
    expect((await mixed).map((v) => v[0])).toEqual([2, 3, 4, 5, 6]);
  });

  it('waits for company only within its window when idle', async () => {
    vi.useFakeTimers();
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 10_000, batchWaitMs: 5 });
    void scheduler.submit([text(1, 4)]);
    void scheduler.submit([text(2, 4)]);
    expect(fake.batches).toEqual([]);
    vi.advanceTimersByTime(5);
    expect(fake.batches).toEqual([[4, 4]]);
  });

  it('refuses a request the queue cannot take now (429) or ever (413), and counts what waits', async () => {
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 20, batchWaitMs: 0 });
    void scheduler.submit([text(1, 10)]);
    void scheduler.submit([text(2, 10), text(3, 10)]);
    expect(scheduler.queue).toEqual({ texts: 2, tokens: 20 });
    expect(() => scheduler.submit([text(4, 1)])).toThrow(QueueFullError);
    expect(() => scheduler.submit([text(5, 21)])).toThrow(RequestTooLargeError);
  });

  it('drops the waiting texts of a cancelled request', async () => {
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 1000, batchWaitMs: 0 });
    const running = scheduler.submit([text(1, 4)]);
    const controller = new AbortController();
    const cancelled = scheduler.submit([text(2, 4), text(3, 4)], controller.signal);
    controller.abort();
    await expect(cancelled).rejects.toBeInstanceOf(CancelledError);
    expect(scheduler.queue).toEqual({ texts: 0, tokens: 0 });
    await fake.finishOne();
    await running;
    expect(fake.batches).toEqual([[4]]);
  });

  it('fails only the request whose text does not fit in memory; its batch neighbours run again', async () => {
    const fake = fakeEmbedder();
    const scheduler = new EmbeddingScheduler(fake.embedder, { limits, maxQueueTokens: 1000, batchWaitMs: 0 });
    fake.failWith((lengths) => (lengths.includes(12) ? new OutOfMemoryError(lengths.indexOf(12), 12, new Error('OOM when allocating')) : undefined));
    const blocker = scheduler.submit([text(1, 4)]);
    const doomed = scheduler.submit([text(2, 12)]).catch((e: unknown) => e);
    const fine = scheduler.submit([text(3, 10)]);
    await fake.finishOne();
    await blocker;
    expect(fake.batches[1]).toEqual([12, 10]);
    await fake.finishOne();
    expect(await doomed).toBeInstanceOf(OutOfMemoryError);
    await fake.finishOne();
    expect((await fine).map((v) => v[0])).toEqual([3]);
    expect(fake.batches[2]).toEqual([10]);
  });
});
