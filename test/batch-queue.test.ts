import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CancelledError, OutOfMemoryError, QueueFullError, RequestTooLargeError } from '../src/errors.js';
import { GROW_BACK_AFTER, type MemoryEstimator } from '../src/pipeline/batcher.js';
import { EmbeddingQueue, type QueueRequest } from '../src/pipeline/queue.js';
import { StatsRecorder } from '../src/pipeline/stats.js';

const free: MemoryEstimator = () => ({ totalBytes: 0, largestTensorBytes: 0 });
const limits = { maxBatchTokens: 64, maxBatchSize: 4, memoryBudgetBytes: Infinity };
const OOM = () => new Error('OOM when allocating tensor with shape[64,12,512,512]');

/** A text of `length` tokens whose first id names it. */
const text = (id: number, length: number) => Int32Array.from({ length }, (_, i) => (i === 0 ? id : 5));

interface FakeOptions {
  lengthBreaks?: number[];
  inFlight?: number;
  concurrency?: number;
  estimate?: MemoryEstimator;
  maxTensorBytes?: number;
  /** Batches finish as soon as they start, instead of when `finishOne` lets them. */
  auto?: boolean;
}

/**
 * A queue over a stand-in model: records each batch (as the lengths of its texts) and answers each text with
 * [its first id]. Batches wait to be released by `finishOne`, unless `auto`; `failWith` makes some fail.
 */
function fakeQueue({ inFlight = 1, concurrency = inFlight, estimate = free, maxTensorBytes, auto = false, lengthBreaks }: FakeOptions = {}) {
  const batches: number[][] = [];
  const pending: (() => void)[] = [];
  let fail: ((lengths: number[]) => Error | undefined) | undefined;
  const queue = new EmbeddingQueue({
    estimate,
    maxTensorBytes,
    lengthBreaks,
    concurrency,
    inFlight,
    run: ({ sequences }) => {
      const lengths = sequences.map((s) => s.length);
      batches.push(lengths);
      return new Promise((resolve, reject) => {
        const settle = () => {
          const error = fail?.(lengths);
          if (error !== undefined) return reject(error);
          resolve({ vectors: sequences.map((s) => Float32Array.of(s[0])), estimatedBytes: 0, measuredPeakBytes: 0 });
        };
        if (auto) settle();
        else pending.push(settle);
      });
    },
  });
  /** Submits sequences; resolves to each one's vector, in order. */
  const submit = (sequences: Int32Array[], extra: Partial<QueueRequest> = {}) => {
    const vectors: number[] = [];
    return queue.submit({ sequences, limits, pooling: 'mean', onVector: (i, v) => (vectors[i] = v[0]), ...extra }).then(() => vectors);
  };
  return {
    queue,
    batches,
    submit,
    /** Lets the oldest running batch finish (after the queue has started what it starts on its own). */
    finishOne: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      pending.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    },
    failWith: (f: (lengths: number[]) => Error | undefined) => (fail = f),
  };
}

afterEach(() => vi.useRealTimers());

describe('the embedding queue', () => {
  it('gives a small request a place among the first batches, not after a large one', async () => {
    const fake = fakeQueue();
    const large = fake.submit(Array.from({ length: 40 }, (_, i) => text(100 + i, 8)));
    const small = fake.submit([text(7, 8)]);
    let smallDone = false;
    void small.then(() => (smallDone = true));
    await fake.finishOne();
    expect(smallDone).toBe(true);
    expect(await small).toEqual([7]);
    while (fake.batches.length < 11) await fake.finishOne();
    await fake.finishOne();
    expect(await large).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
  });

  it('starts a batch on the next microtask, so calls made together share it', async () => {
    const fake = fakeQueue({ auto: true });
    const calls = Array.from({ length: 4 }, (_, i) => fake.submit([text(i, 8)]));
    expect(fake.batches).toEqual([]);
    expect(await Promise.all(calls)).toEqual([[0], [1], [2], [3]]);
    expect(fake.batches).toEqual([[8, 8, 8, 8]]);
  });

  it('keeps as many batches in flight as the runner does, and no more', async () => {
    const fake = fakeQueue({ inFlight: 2, concurrency: 1 });
    const done = fake.submit(Array.from({ length: 12 }, (_, i) => text(i, 16)));
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.batches.length).toBe(2);
    await fake.finishOne();
    // Three batches of four texts in all.
    expect(fake.batches.length).toBe(3);
    await fake.finishOne();
    await fake.finishOne();
    expect(await done).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('gives every worker a batch when there are enough texts, longest first, each padded to its longest', async () => {
    const fake = fakeQueue({ inFlight: 2, concurrency: 2, auto: true });
    const lengths = Array.from({ length: 8 }, (_, i) => 4 + i);
    const wide = { ...limits, maxBatchTokens: 1e6, maxBatchSize: 64 };
    await fake.submit(lengths.map((l, i) => text(i, l)), { limits: wide });
    expect(fake.batches).toEqual([[11, 10, 9, 8], [7, 6, 5, 4]]);
  });

  it('puts texts of similar length together, within the token budget', async () => {
    const fake = fakeQueue();
    // The first batch runs alone; the rest queue behind it.
    const first = fake.submit([text(1, 4)]);
    await Promise.resolve();
    const mixed = fake.submit([text(2, 30), text(3, 4), text(4, 30), text(5, 4), text(6, 4)]);
    while (fake.batches.length < 3) await fake.finishOne();
    expect(fake.batches).toEqual([[4], [30, 30], [4, 4, 4]]);
    await fake.finishOne();
    await first;
    expect(await mixed).toEqual([2, 3, 4, 5, 6]);
  });

  it('keeps texts on either side of a length break out of one batch, where the budget would have joined them', async () => {
    const fake = fakeQueue({ auto: true, lengthBreaks: [8] });
    // 12 + 8 + 5 fit the budget of 64 padded to 12, but 8 and 5 are at most the break and 12 is past it; 9 too.
    expect(await fake.submit([text(1, 12), text(2, 8), text(3, 9), text(4, 5)])).toEqual([1, 2, 3, 4]);
    expect(fake.batches).toEqual([[12, 9], [8, 5]]);
  });

  it('runs requests with different limits or pooling in batches of their own, fairly in turn', async () => {
    const fake = fakeQueue({ auto: true });
    const results = await Promise.all([
      fake.submit([text(1, 4), text(2, 4)]),
      fake.submit([text(3, 4)], { limits: { ...limits, maxBatchSize: 1 } }),
      fake.submit([text(4, 4)], { pooling: 'cls' }),
      fake.submit([text(5, 4)]),
    ]);
    expect(results).toEqual([[1, 2], [3], [4], [5]]);
    expect(fake.batches).toEqual([[4, 4, 4], [4], [4]]);
  });

  it('waits for company only within its window when idle', async () => {
    vi.useFakeTimers();
    const fake = fakeQueue();
    fake.queue.batchWaitMs = 5;
    void fake.submit([text(1, 4)]);
    void fake.submit([text(2, 4)]);
    await Promise.resolve();
    expect(fake.batches).toEqual([]);
    vi.advanceTimersByTime(5);
    expect(fake.batches).toEqual([[4, 4]]);
  });

  it("refuses a request its maxQueueTokens cannot take now (429) or ever (413), and counts what waits", async () => {
    const fake = fakeQueue();
    const maxQueueTokens = 20;
    void fake.submit([text(1, 10)], { maxQueueTokens });
    void fake.submit([text(2, 10), text(3, 10)]);
    expect(fake.queue.queue).toEqual({ texts: 3, tokens: 30 });
    expect(() => fake.submit([text(4, 1)], { maxQueueTokens: 30 })).toThrow(QueueFullError);
    expect(() => fake.submit([text(5, 21)], { maxQueueTokens })).toThrow(RequestTooLargeError);
    // Without a limit, a call always queues.
    void fake.submit([text(6, 21)]);
    expect(fake.queue.queue.texts).toBe(4);
  });

  it('drops the waiting texts of a cancelled request', async () => {
    const fake = fakeQueue();
    const running = fake.submit([text(1, 4)]);
    await Promise.resolve();
    const controller = new AbortController();
    const cancelled = fake.submit([text(2, 4), text(3, 4)], { signal: controller.signal });
    controller.abort();
    await expect(cancelled).rejects.toBeInstanceOf(CancelledError);
    expect(fake.queue.queue).toEqual({ texts: 0, tokens: 0 });
    await fake.finishOne();
    await running;
    expect(fake.batches).toEqual([[4]]);
    await expect(fake.submit([text(4, 4)], { signal: controller.signal })).rejects.toBeInstanceOf(CancelledError);
  });

  it('lets go of a signal once its request is answered, so one signal can serve many calls without keeping them', async () => {
    const fake = fakeQueue({ auto: true });
    const controller = new AbortController();
    for (let i = 0; i < 20; i++) await fake.submit([text(i, 4)], { signal: controller.signal });
    // A cancelled and a failed request let go too.
    const failing = new AbortController();
    fake.failWith(() => new Error('broken'));
    await expect(fake.submit([text(99, 4)], { signal: failing.signal })).rejects.toThrow('broken');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(failing.signal, 'abort')).toHaveLength(0);
  });

  it('fails only the request whose text does not fit in memory alone; its batch neighbours run again', async () => {
    const fake = fakeQueue();
    fake.failWith((lengths) => (lengths.includes(12) ? OOM() : undefined));
    const blocker = fake.submit([text(1, 4)]);
    await Promise.resolve();
    const doomed = fake.submit([text(2, 12)]).catch((e: unknown) => e);
    const fine = fake.submit([text(3, 10)]);
    await fake.finishOne();
    await blocker;
    expect(fake.batches[1]).toEqual([12, 10]);
    await fake.finishOne();
    // Halved to one text a batch: the long text alone, which fails, then its neighbour.
    expect(fake.batches[2]).toEqual([12]);
    await fake.finishOne();
    const error = await doomed;
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect((error as OutOfMemoryError).index).toBe(0);
    expect((error as OutOfMemoryError).tokens).toBe(12);
    await fake.finishOne();
    expect(await fine).toEqual([3]);
    expect(fake.batches[3]).toEqual([10]);
  });

  it('fails every request of a batch that fails otherwise, and none of the others', async () => {
    const fake = fakeQueue({ auto: true });
    fake.failWith((lengths) => (lengths.includes(9) ? new Error('broken kernel') : undefined));
    const wide = { ...limits, maxBatchTokens: 1e6 };
    const [a, b, c] = await Promise.allSettled([
      fake.submit([text(1, 9)]),
      fake.submit([text(2, 9)]),
      fake.submit([text(3, 4)], { limits: wide }),
    ]);
    expect(a.status === 'rejected' && (a.reason as Error).message).toBe('broken kernel');
    expect(b.status === 'rejected' && (b.reason as Error).message).toBe('broken kernel');
    expect(c).toEqual({ status: 'fulfilled', value: [3] });
  });

  it('rejects a failed request only once its other batches in flight have settled', async () => {
    const fake = fakeQueue({ inFlight: 2, concurrency: 1 });
    fake.failWith((lengths) => (lengths[0] === 16 ? new Error('broken') : undefined));
    let settled = false;
    const call = fake.submit([...Array.from({ length: 4 }, (_, i) => text(i, 16)), ...Array.from({ length: 4 }, (_, i) => text(i, 8))]);
    void call.catch(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.batches).toEqual([[16, 16, 16, 16], [8, 8, 8, 8]]);
    await fake.finishOne();
    expect(settled).toBe(false);
    await fake.finishOne();
    expect(settled).toBe(true);
  });

  it("counts each request's own texts, tokens, batches and retries in its stats", async () => {
    const fake = fakeQueue({ auto: true });
    let failures = 1;
    fake.failWith((lengths) => (lengths.length > 2 && failures-- > 0 ? OOM() : undefined));
    const mine = new StatsRecorder('test', 2);
    const theirs = new StatsRecorder('test', 2);
    await Promise.all([
      fake.submit([text(1, 8), text(2, 6)], { stats: mine }),
      fake.submit([text(3, 8), text(4, 2)], { stats: theirs }),
    ]);
    // Four texts in one batch ran out of memory; then two batches of two.
    expect(fake.batches).toEqual([[8, 8, 6, 2], [8, 8], [6, 2]]);
    expect(mine.finish()).toMatchObject({ windows: 2, tokens: 14, paddedTokens: 8 + 6, batches: 2, retries: 1 });
    expect(theirs.finish()).toMatchObject({ windows: 2, tokens: 10, paddedTokens: 8 + 6, batches: 2, retries: 1 });
  });

  it('resolves idle() once nothing waits and nothing runs', async () => {
    const fake = fakeQueue();
    await fake.queue.idle();
    const call = fake.submit([text(1, 4)]);
    let idle = false;
    void fake.queue.idle().then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    await fake.finishOne();
    await call;
    expect(idle).toBe(true);
  });

  it('tells its listeners of every batch and queue change, until they stop watching', async () => {
    const fake = fakeQueue({ auto: true });
    const seen: string[] = [];
    const unwatch = fake.queue.watch({ onBatch: (texts, tokens, padded) => seen.push(`batch ${texts} ${tokens} ${padded}`), onQueue: (texts) => seen.push(`queue ${texts}`) });
    await fake.submit([text(1, 4), text(2, 2)]);
    expect(seen).toEqual(['queue 2', 'queue 0', 'batch 2 6 8']);
    unwatch();
    await fake.submit([text(1, 4)]);
    expect(seen).toHaveLength(3);
  });
});

describe('out-of-memory back-off', () => {
  const wide = { maxBatchTokens: 1e9, maxBatchSize: 16, memoryBudgetBytes: Infinity };

  /** Runs `count` equal texts; `fails(size)` decides which batch sizes run out of memory. */
  async function runTexts(fake: ReturnType<typeof fakeQueue>, count: number, fails: (size: number) => boolean) {
    const from = fake.batches.length;
    fake.failWith((lengths) => (fails(lengths.length) ? OOM() : undefined));
    const stats = new StatsRecorder('test', count);
    const vectors = await fake.submit(Array.from({ length: count }, (_, i) => text(i, 10)), { limits: wide, stats });
    expect(vectors).toEqual(Array.from({ length: count }, (_, i) => i));
    return { sizes: fake.batches.slice(from).map((b) => b.length), retries: stats.finish().retries };
  }
  it('halves until a batch fits and keeps that size for the rest of the call', async () => {
    const fake = fakeQueue({ auto: true });
    const { sizes, retries } = await runTexts(fake, 24, (size) => size > 4);
    expect(sizes.slice(0, 3)).toEqual([16, 8, 4]);
    expect(sizes.slice(3).every((s) => s <= 4)).toBe(true);
    expect(retries).toBe(2);
    // And for later calls with the same limits.
    expect((await runTexts(fake, 8, () => false)).sizes).toEqual([4, 4]);
  });

  it('grows back after a run of successes, so one transient failure does not halve every later call', async () => {
    const fake = fakeQueue({ auto: true });
    let transient = true;
    await runTexts(fake, 4, (size) => {
      const fail = transient && size > 2;
      if (fail) transient = false;
      return fail;
    });
    // Two batches of two ran after the failure; GROW_BACK_AFTER in a row at the reduced size double it, again
    // and again, up to the limit: each call below runs at one size throughout, and the next at twice it.
    const sizesOf = async (count: number) => [...new Set((await runTexts(fake, count, () => false)).sizes)];
    expect(await sizesOf(2 * (GROW_BACK_AFTER - 2))).toEqual([2]);
    expect(await sizesOf(4 * GROW_BACK_AFTER)).toEqual([4]);
    expect(await sizesOf(8 * GROW_BACK_AFTER)).toEqual([8]);
    expect((await runTexts(fake, 32, () => false)).sizes).toEqual([16, 16]);
  });

  it('finds a size that keeps failing again at the cost of one retry', async () => {
    const fake = fakeQueue({ auto: true });
    await runTexts(fake, 8, (size) => size > 4);
    await runTexts(fake, 4 * GROW_BACK_AFTER, () => false);
    const again = await runTexts(fake, 16, (size) => size > 4);
    expect(again.sizes[0]).toBe(8);
    expect(again.retries).toBe(1);
    expect((await runTexts(fake, 8, () => false)).sizes).toEqual([4, 4]);
  });

  it('does not grow on batches smaller than the reduced size', async () => {
    const fake = fakeQueue({ auto: true });
    await runTexts(fake, 8, (size) => size > 4);
    for (let i = 0; i < 2 * GROW_BACK_AFTER; i++) await runTexts(fake, 1, () => false);
    expect((await runTexts(fake, 8, () => false)).sizes).toEqual([4, 4]);
  });

  it('names the text that does not fit even alone', async () => {
    const fake = fakeQueue({ auto: true });
    const error = await runTexts(fake, 3, () => true).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect([0, 1, 2]).toContain((error as OutOfMemoryError).index);
  });
});

describe('batch planning under memory limits', () => {
  const budget = { maxBatchTokens: 1e9, maxBatchSize: 64, memoryBudgetBytes: 1000 };
  const lengthsOf = (lengths: number[]) => lengths.map((l, i) => text(i, l));

  it('keeps every batch under the memory budget, longest texts first', async () => {
    const fake = fakeQueue({ auto: true, estimate: (size, length) => ({ totalBytes: size * length, largestTensorBytes: 0 }) });
    await fake.submit(lengthsOf([100, 300, 200, 100, 50]), { limits: budget });
    for (const b of fake.batches) expect(b.length * b[0]).toBeLessThanOrEqual(1000);
    expect(fake.batches).toEqual([[300, 200, 100], [100, 50]]);
  });

  it('keeps every tensor under the per-buffer limit, and a text too big for it alone still gets a batch', async () => {
    const fake = fakeQueue({ auto: true, maxTensorBytes: 400, estimate: (size, length) => ({ totalBytes: 0, largestTensorBytes: size * length }) });
    await fake.submit(lengthsOf([100, 100, 100, 100, 100, 500]), { limits: { ...budget, memoryBudgetBytes: Infinity } });
    expect(fake.batches.map((b) => b.length)).toEqual([1, 4, 1]);
  });
});
