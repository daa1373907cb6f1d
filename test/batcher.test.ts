import { describe, expect, it } from 'vitest';
import { OutOfMemoryError } from '../src/errors.js';
import { BatchProcessor, GROW_BACK_AFTER, type Batch } from '../src/scheduling/batcher.js';

const free = () => ({ totalBytes: 0, largestTensorBytes: 0 });
const OOM = () => new Error('OOM when allocating tensor with shape[64,12,512,512]');

/** Runs `count` equal texts through the processor; `fails(size)` decides which batch sizes run out of memory. */
async function runTexts(processor: BatchProcessor, count: number, fails: (size: number) => boolean) {
  const lengths = new Array<number>(count).fill(10);
  const sizes: number[] = [];
  const done = new Set<number>();
  let retries = 0;
  await processor.run(
    processor.plan(lengths),
    lengths,
    async (batch: Batch) => {
      sizes.push(batch.indices.length);
      if (fails(batch.indices.length)) throw OOM();
      batch.indices.forEach((i) => done.add(i));
    },
    () => retries++,
  );
  expect(done.size).toBe(count);
  return { sizes, retries };
}

describe('out-of-memory back-off', () => {
  const limits = { maxBatchTokens: 1e9, maxBatchSize: 16, memoryBudgetBytes: Infinity };

  it('halves until a batch fits and keeps that size for the rest of the call', async () => {
    const processor = new BatchProcessor(limits, free);
    const { sizes, retries } = await runTexts(processor, 24, (size) => size > 4);
    expect(sizes.slice(0, 3)).toEqual([16, 8, 4]);
    expect(sizes.slice(3).every((s) => s <= 4)).toBe(true);
    expect(retries).toBe(2);
    expect(processor.maxBatchSize).toBe(4);
  });

  it('grows back after a run of successes, so one transient failure does not halve every later call', async () => {
    const processor = new BatchProcessor(limits, free);
    let transient = true;
    await runTexts(processor, 4, (size) => {
      const fail = transient && size > 2;
      if (fail) transient = false;
      return fail;
    });
    expect(processor.maxBatchSize).toBe(2);
    // GROW_BACK_AFTER batches in a row at the reduced size double it, again and again, up to the limit.
    await runTexts(processor, 2 * GROW_BACK_AFTER, () => false);
    expect(processor.maxBatchSize).toBe(4);
    await runTexts(processor, 4 * GROW_BACK_AFTER, () => false);
    expect(processor.maxBatchSize).toBe(8);
    await runTexts(processor, 8 * GROW_BACK_AFTER, () => false);
    expect(processor.maxBatchSize).toBe(16);
  });

  it('finds a size that keeps failing again at the cost of one retry', async () => {
    const processor = new BatchProcessor(limits, free);
    await runTexts(processor, 8, (size) => size > 4);
    expect(processor.maxBatchSize).toBe(4);
    await runTexts(processor, 4 * GROW_BACK_AFTER, () => false);
    expect(processor.maxBatchSize).toBe(8);
    const again = await runTexts(processor, 16, (size) => size > 4);
    expect(again.retries).toBe(1);
    expect(processor.maxBatchSize).toBe(4);
  });

  it('does not grow on batches smaller than the reduced size', async () => {
    const processor = new BatchProcessor(limits, free);
    await runTexts(processor, 8, (size) => size > 4);
    for (let i = 0; i < 2 * GROW_BACK_AFTER; i++) await runTexts(processor, 1, () => false);
    expect(processor.maxBatchSize).toBe(4);
  });

  it('names the text that does not fit even alone', async () => {
    const processor = new BatchProcessor(limits, free);
    const error = await runTexts(processor, 3, () => true).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutOfMemoryError);
    expect((error as OutOfMemoryError).index).toBe(0);
  });
});

describe('batch planning under memory limits', () => {
  const limits = { maxBatchTokens: 1e9, maxBatchSize: 64, memoryBudgetBytes: 1000 };

  it('keeps every batch under the memory budget, longest texts first', () => {
    const processor = new BatchProcessor(limits, (size, length) => ({ totalBytes: size * length, largestTensorBytes: 0 }));
    const batches = processor.plan([100, 300, 200, 100, 50]);
    for (const b of batches) expect(b.indices.length * b.length).toBeLessThanOrEqual(1000);
    expect(batches.map((b) => b.indices)).toEqual([[1, 2, 0], [3, 4]]);
  });

  it('keeps every tensor under the per-buffer limit, and a text too big for it alone still gets a batch', () => {
    const processor = new BatchProcessor(
      { ...limits, memoryBudgetBytes: Infinity, maxTensorBytes: 400 },
      (size, length) => ({ totalBytes: 0, largestTensorBytes: size * length }),
    );
    const batches = processor.plan([100, 100, 100, 100, 100, 500]);
    expect(batches.map((b) => b.indices.length)).toEqual([1, 4, 1]);
  });
});
