import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';
import { BroadcastChannel, type Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { DisposedError, ModelFilesError, NonFiniteWeightError, WeightsError, WorkerError } from '../src/errors.js';
import { loadModel } from '../src/model/load-model.js';
import type { BatchJob } from '../src/pipeline/batch-job.js';
import { TextTokenizer } from '../src/pipeline/tokenizer.js';
import { WorkerPoolRunner } from '../src/pool/worker-pool.js';
import { estimateMemory } from '../src/pipeline/memory.js';
import { availableMemory, defaultWorkerCount } from '../src/pipeline/workers.js';
import { backendNamed } from '../src/backends/backend.js';
import { wasmWeightCopies } from '../src/backends/xnnpack-packer.js';
import { readConfig, readTokenizerFiles } from '../src/weights/model-folder.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { useBackend } from './helpers/backend.js';
import { expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { mostInFlight } from './helpers/in-flight.js';
import { tempDir } from './helpers/tmp.js';
import { HOOK_CHANNEL, type HookControl, type HookEvent } from './helpers/worker-hooks.js';

const FIXTURE = 'nomic-tiny-ntk';
const texts = reference(FIXTURE).texts;
const raw = texts.map((t) => t.text);
const work = tempDir();
const HOOKS = new URL('./helpers/worker-hooks.ts', import.meta.url);
/** Bound on any wait for a worker event: starting a worker loads wasm and the model. */
const EVENT_TIMEOUT = 30_000;

/** Worker events, in arrival order, awaited with a bound. */
class HookEvents {
  private readonly channel = new BroadcastChannel(HOOK_CHANNEL);
  private readonly seen: HookEvent[] = [];
  private readonly listeners = new Set<() => void>();

  constructor() {
    this.channel.onmessage = (message) => {
      this.seen.push((message as { data: HookEvent }).data);
      for (const listener of this.listeners) listener();
    };
  }

  count(type: HookEvent['type']): number {
    return this.seen.filter((e) => e.type === type).length;
  }

  /** Resolves once `count` events of `type` have arrived in all; fails after the bound. */
  waitFor(type: HookEvent['type'], count: number): Promise<HookEvent[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const matching = this.seen.filter((e) => e.type === type);
        if (matching.length < count) return;
        this.listeners.delete(check);
        clearTimeout(timer);
        resolve(matching);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`waited ${EVENT_TIMEOUT} ms for ${count} "${type}" events, got ${this.count(type)}`));
      }, EVENT_TIMEOUT);
      this.listeners.add(check);
      check();
    });
  }

  close(): void {
    this.channel.close();
  }
}

/** The pool's threads, read by the tests that kill workers. */
function threads(runner: WorkerPoolRunner): Worker[] {
  return [...(runner as unknown as { slots: Set<{ worker: Worker }> }).slots].map((s) => s.worker);
}

let controls = 0;
/** A pool of real workers with fault-injection hooks, wrapped in an embedder. */
async function hookedPool(size: number, control: HookControl = {}, dir = fixtureDir(FIXTURE)) {
  // Not .json: tsx takes a module URL ending in .json, fragment included, for a JSON module.
  const controlFile = join(work, `control-${controls++}.state`);
  const setControl = (next: HookControl) => writeFileSync(controlFile, JSON.stringify(next));
  setControl(control);
  const hooks = `${pathToFileURL(HOOKS.pathname).href}#control=${encodeURIComponent(controlFile)}`;
  const runner = await WorkerPoolRunner.start(size, { dir, backend: 'wasm', modelOptions: {}, hooks });
  const config = readConfig(dir);
  const embedder = new Embedder(runner, TextTokenizer.fromFiles(readTokenizerFiles(dir), config.n_positions), backendNamed('wasm'), config, { modelName: 'model', machineBytes: totalmem() });
  return { runner, embedder, setControl };
}

/** A batch job of the first `n` fixture texts, as the embedder would send it. */
function job(n: number): BatchJob {
  const sequences = texts.slice(0, n).map((t) => Int32Array.from(t.input_ids));
  const length = Math.max(...sequences.map((s) => s.length));
  return { sequences, length, queryBlock: length, attention: 'per-head', pooling: 'mean' };
}

describe('worker pool', () => {
  let events: HookEvents;
  beforeAll(() => {
    events = new HookEvents();
  });
  afterAll(() => events.close());

  describe('at work', () => {
    let pool: Awaited<ReturnType<typeof hookedPool>>;
    beforeAll(async () => {
      pool = await hookedPool(2);
    });
    afterAll(() => pool.embedder.dispose());
    afterEach(() => pool.setControl({}));

    it('runs two workers and keeps the model out of this thread', () => {
      expect(pool.embedder.workers).toBe(2);
      expect(() => pool.embedder.model).toThrow(/worker threads/);
    });

    it('matches the reference, in input order, with batches spread over the workers', async () => {
      const { embeddings, stats } = await pool.embedder.embed(raw, { maxBatchSize: 3 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.batches).toBe(Math.ceil(texts.length / 3));
      expect(stats.measuredPeakBytes).toBeGreaterThan(0);
    });

    it('runs batches on both workers at once', async () => {
      expect(await mostInFlight(pool.runner, () => pool.embedder.embed(raw, { maxBatchSize: 2 }))).toBe(2);
    });

    it('replaces a worker that ran out of memory inside, backs off, and loses nothing', async () => {
      const before = threads(pool.runner).map((w) => w.threadId);
      const ooms = events.count('oom');
      const starts = events.count('started');
      pool.setControl({ oomAbove: 2 });
      const { embeddings, stats } = await pool.embedder.embed(raw, { maxBatchSize: 8 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.retries).toBeGreaterThan(0);
      const failed = events.count('oom') - ooms;
      expect(failed).toBeGreaterThan(0);
      // One fresh worker per failure; the ones that failed are gone.
      await events.waitFor('started', starts + failed);
      await expect.poll(() => threads(pool.runner).length, { timeout: EVENT_TIMEOUT }).toBe(2);
      expect(threads(pool.runner).map((w) => w.threadId)).not.toEqual(before);
    });

    it('fails the batch of a worker killed mid-run with a WorkerError, then goes on with a replacement', async () => {
      const starts = events.count('started');
      const running = events.count('running');
      pool.setControl({ hold: true });
      const call = pool.embedder.embed([raw[0]]).catch((e: unknown) => e);
      const [event] = (await events.waitFor('running', running + 1)).slice(-1);
      await threads(pool.runner).find((w) => w.threadId === event.threadId)!.terminate();
      const error = await call;
      expect(error).toBeInstanceOf(WorkerError);
      expect((error as WorkerError).reason).toBe('exited');
      expect((error as Error).message).toMatch(/exited with code 1/);
      pool.setControl({});
      await events.waitFor('started', starts + 1);
      const { embeddings } = await pool.embedder.embed(raw, { maxBatchSize: 2 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    });

    it('brings an error raised inside a worker back with its type and fields', async () => {
      // Out of memory alone: the batcher names the text, with the backend's message as the cause.
      pool.setControl({ oomAbove: 0 });
      const error = await pool.embedder.embed([raw[0]]).catch((e: unknown) => e);
      expect((error as Error).name).toBe('OutOfMemoryError');
      expect(error).toMatchObject({ index: 0, tokens: texts[0].num_tokens });
    });
  });

  it('settles every running and queued call when disposed mid-run', async () => {
    const { runner, embedder } = await hookedPool(2, { hold: true });
    const running = events.count('running');
    const calls = [runner.run(job(1)), runner.run(job(2)), runner.run(job(3))].map((p) => p.catch((e: unknown) => e));
    const viaEmbed = embedder.embed([raw[0]]).catch((e: unknown) => e);
    // Two batches run (one per worker); the other two wait for a worker.
    await events.waitFor('running', running + 2);
    await embedder.dispose();
    for (const outcome of [...(await Promise.all(calls)), await viaEmbed]) expect(outcome).toBeInstanceOf(DisposedError);
    await expect(embedder.embed(['hello'])).rejects.toBeInstanceOf(DisposedError);
    expect(threads(runner)).toHaveLength(0);
  });

  it('fails running and queued calls when the last worker dies and none can replace it', async () => {
    const { runner, embedder, setControl } = await hookedPool(2);
    try {
      setControl({ failStart: true });
      const [first, second] = threads(runner);
      await first.terminate();
      // Its replacement fails to start: one worker is left.
      await expect.poll(() => runner.concurrency, { timeout: EVENT_TIMEOUT }).toBe(1);
      expect(threads(runner)).toEqual([second]);
      setControl({ failStart: true, hold: true });
      const running = events.count('running');
      const held = runner.run(job(1)).catch((e: unknown) => e);
      const queued = runner.run(job(1)).catch((e: unknown) => e);
      await events.waitFor('running', running + 1);
      await second.terminate();
      const [heldError, queuedError] = await Promise.all([held, queued]);
      expect(heldError).toMatchObject({ name: 'WorkerError', reason: 'exited' });
      expect(queuedError).toMatchObject({ name: 'WorkerError', reason: 'no-workers' });
      expect((queuedError as Error).message).toMatch(/no worker thread is left running \(.*injected start failure\)/);
      await expect(embedder.embed(['hello'])).rejects.toMatchObject({ reason: 'no-workers' });
    } finally {
      await embedder.dispose();
    }
  });

  it('fails the start with the typed error of a worker that cannot start', async () => {
    const error = await hookedPool(2, { failStart: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelFilesError);
    expect(error).toMatchObject({ path: '/injected/model.safetensors' });
  });

  it('gives the same typed error, fields included, with workers as without', async () => {
    // A checkpoint whose header is right but whose data holds a NaN: only loading the weights finds it.
    const dir = join(work, 'nan-model');
    mkdirSync(dir);
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(fixtureDir('nomic-tiny'), f), join(dir, f));
    const file = openSafetensors(join(fixtureDir('nomic-tiny'), 'model.safetensors'));
    const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: file.readFloat32(t.name) }));
    file.close();
    tensors.find((t) => t.name === 'encoder.layers.1.norm2.weight')!.data[5] = NaN;
    writeSafetensors(join(dir, 'model.safetensors'), tensors);

    await useBackend('wasm');
    const inThread = (() => {
      try {
        loadModel(dir);
      } catch (e) {
        return e as NonFiniteWeightError;
      }
    })();
    const inWorker = (await loadEmbedder(dir, { backend: 'wasm', workers: 2 }).catch((e: unknown) => e)) as NonFiniteWeightError;
    expect(inThread).toBeInstanceOf(NonFiniteWeightError);
    expect(inWorker).toBeInstanceOf(NonFiniteWeightError);
    for (const field of ['file', 'tensor', 'index', 'message', 'name'] as const) expect(inWorker[field]).toEqual(inThread![field]);
    expect(inWorker.value).toBeNaN();
  });

  it('rejects a broken checkpoint before starting workers', async () => {
    const dir = join(work, 'empty-model');
    mkdirSync(dir);
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(fixtureDir('nomic-tiny'), f), join(dir, f));
    writeSafetensors(join(dir, 'model.safetensors'), []);
    await expect(loadEmbedder(dir, { backend: 'wasm', workers: 2 })).rejects.toBeInstanceOf(WeightsError);
  });

  it('ends every worker thread on dispose, and later calls say so', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 2 });
    const started = threads(embedder.runner as WorkerPoolRunner);
    expect(started.every((t) => t.threadId > 0)).toBe(true);
    await embedder.dispose();
    await embedder.dispose();
    // A terminated worker reports threadId -1.
    expect(started.every((t) => t.threadId === -1)).toBe(true);
    await expect(embedder.embed(['hello'])).rejects.toThrow(/disposed/);
  });

  it('says so as well when the model ran in this thread', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1 });
    await embedder.dispose();
    await expect(embedder.embed(['hello'])).rejects.toBeInstanceOf(DisposedError);
  });
});

describe('default worker count', () => {
  const real = readConfig(fixtureDir('nomic-tiny'));
  const GiB = 1024 ** 3;
  const batch = { weightBytes: 0.5 * GiB, activationBytes: 0.25 * GiB, attentionBytes: 0, totalBytes: 0.75 * GiB, largestTensorBytes: 0 };

  it('is one thread off wasm, which use every core from one', () => {
    expect(defaultWorkerCount({ oneCorePerInstance: false, cores: 16, availableBytes: 64 * GiB, batch })).toBe(1);
  });

  it('is the cores on wasm when memory holds a model per core', () => {
    expect(defaultWorkerCount({ oneCorePerInstance: true, cores: 4, availableBytes: 64 * GiB, batch })).toBe(4);
  });

  it('is what memory holds when that is fewer: the weights and a batch per worker, in three quarters of it', () => {
    // 0.75 GiB per worker; 0.75 × 4 GiB = 3 GiB holds four.
    expect(defaultWorkerCount({ oneCorePerInstance: true, cores: 16, availableBytes: 4 * GiB, batch })).toBe(4);
    expect(defaultWorkerCount({ oneCorePerInstance: true, cores: 16, availableBytes: 0.5 * GiB, batch })).toBe(1);
    // With the weights held twice (a tfjs-backend-wasm release whose packing keeps tfjs's copy), 1.25 GiB: two.
    expect(defaultWorkerCount({ oneCorePerInstance: true, cores: 16, availableBytes: 4 * GiB, batch, weightCopies: 2 })).toBe(2);
    expect(wasmWeightCopies()).toBe(1);
    expect(wasmWeightCopies('4.23.0')).toBe(2);
  });

  it('takes a container limit below the free memory', () => {
    expect(availableMemory(10 * GiB, 2 * GiB)).toBe(2 * GiB);
    expect(availableMemory(10 * GiB, 0)).toBe(10 * GiB);
    expect(availableMemory(10 * GiB, undefined)).toBe(10 * GiB);
  });

  it('is sized from the memory estimate of the model', () => {
    expect(estimateMemory(real, 16, 512, { attention: 'per-head' }).weightBytes).toBeGreaterThan(0);
  });
});
