import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { NomicEmbedError } from '../errors.js';
import type { BatchJob, BatchOutput } from '../pipeline/batch-job.js';
import { isOutOfMemory } from '../pipeline/out-of-memory.js';
import type { BatchRunner } from './runner.js';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker.js';

/** An error raised inside a worker thread, carried over with its name and message. */
export class WorkerError extends NomicEmbedError {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

interface Slot {
  worker: Worker;
  pending: { id: number; resolve: (output: BatchOutput) => void; reject: (error: Error) => void } | undefined;
}

/**
 * A fixed set of worker threads, each with its own backend and model, fed one
 * batch at a time. tfjs runs the wasm backend on a single thread per instance,
 * so this is how a batch stream uses every core. A worker that runs out of
 * memory or dies is replaced by a fresh one before it gets more work, since a
 * WebAssembly instance that failed to grow may not recover.
 */
export class WorkerPoolRunner implements BatchRunner {
  private readonly idle: Slot[] = [];
  private readonly waiting: ((slot: Slot) => void)[] = [];
  private readonly slots = new Set<Slot>();
  private nextId = 0;
  private disposed = false;

  private constructor(private readonly setup: WorkerSetup) {}

  get concurrency(): number {
    return this.slots.size;
  }

  /** Starts `size` workers and waits until each has loaded its model. */
  static async start(size: number, setup: WorkerSetup): Promise<WorkerPoolRunner> {
    const pool = new WorkerPoolRunner(setup);
    const started = await Promise.allSettled(Array.from({ length: size }, () => pool.spawn()));
    const failure = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure !== undefined) {
      await pool.dispose();
      throw failure.reason;
    }
    for (const s of started) pool.release((s as PromiseFulfilledResult<Slot>).value);
    return pool;
  }

  async run(job: BatchJob): Promise<BatchOutput> {
    if (this.disposed) throw new NomicEmbedError('the embedder was disposed');
    const slot = await this.acquire();
    const id = this.nextId++;
    try {
      const output = await new Promise<BatchOutput>((resolve, reject) => {
        slot.pending = { id, resolve, reject };
        slot.worker.postMessage({ id, job } satisfies WorkerRequest);
      });
      slot.pending = undefined;
      this.release(slot);
      return output;
    } catch (error) {
      slot.pending = undefined;
      if (!this.slots.has(slot)) await this.respawn();
      else if (isOutOfMemory(error)) await this.replace(slot);
      else this.release(slot);
      throw error;
    }
  }

  private spawn(): Promise<Slot> {
    const here = fileURLToPath(import.meta.url);
    // Unbuilt (the test suite runs the .ts sources) the worker needs a TypeScript loader first.
    const entry = here.endsWith('.ts') ? './ts-worker.mjs' : './worker.js';
    const worker = new Worker(new URL(entry, import.meta.url), { workerData: this.setup });
    const slot: Slot = { worker, pending: undefined };
    this.slots.add(slot);
    return new Promise<Slot>((resolve, reject) => {
      let ready = false;
      worker.on('message', (reply: WorkerReply) => {
        if (reply.type === 'ready') {
          ready = true;
          resolve(slot);
        } else if (reply.type === 'result' && slot.pending !== undefined && slot.pending.id === reply.id) {
          slot.pending.resolve({ vectors: reply.vectors, measuredPeakBytes: reply.measuredPeakBytes });
        } else if (reply.type === 'error') {
          const error = new WorkerError(reply.name, reply.message);
          if (!ready) reject(error);
          else if (slot.pending !== undefined && slot.pending.id === reply.id) slot.pending.reject(error);
        }
      });
      const fail = (error: Error) => {
        if (!this.slots.delete(slot)) return;
        const idle = this.idle.indexOf(slot);
        if (idle >= 0) this.idle.splice(idle, 1);
        if (!ready) return reject(error);
        if (slot.pending !== undefined) slot.pending.reject(error);
        // A worker that was idle when it died is replaced at once; a busy one by run().
        else if (!this.disposed) void this.respawn();
      };
      worker.on('error', (error) => fail(new WorkerError('WorkerError', `worker thread failed: ${error.message}`)));
      worker.on('exit', (code) => {
        if (!this.disposed) fail(new WorkerError('WorkerError', `worker thread exited with code ${code}`));
      });
    });
  }

  private acquire(): Promise<Slot> {
    const slot = this.idle.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.slots.size === 0) return Promise.reject(new NomicEmbedError('no worker thread is left running'));
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(slot: Slot): void {
    const next = this.waiting.shift();
    if (next !== undefined) next(slot);
    else this.idle.push(slot);
  }

  private async replace(slot: Slot): Promise<void> {
    this.slots.delete(slot);
    await slot.worker.terminate();
    await this.respawn();
  }

  private async respawn(): Promise<void> {
    if (this.disposed) return;
    try {
      this.release(await this.spawn());
    } catch {
      // The pool shrinks; run() says so once no worker is left.
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const workers = [...this.slots].map((s) => s.worker);
    this.slots.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
