import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DisposedError, WorkerError } from '../errors.js';
import type { BatchJob, BatchOutput } from '../pipeline/batch-job.js';
import { isOutOfMemory } from '../pipeline/out-of-memory.js';
import { deserializeError } from './error-transfer.js';
import type { BatchRunner } from './runner.js';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker.js';

interface Pending {
  readonly id: number;
  readonly resolve: (output: BatchOutput) => void;
  readonly reject: (error: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  pending: Pending | undefined;
  /** Taken out of service on purpose (after running out of memory); its exit is expected. */
  retired: boolean;
  /** The last uncaught error the thread reported, for the message of its exit. */
  crash: Error | undefined;
}

interface Waiter {
  readonly resolve: (slot: Slot) => void;
  readonly reject: (error: Error) => void;
}

/**
 * A fixed set of worker threads, each with its own backend and model, fed one
 * batch at a time. tfjs runs the wasm backend on a single thread per instance,
 * so this is how a batch stream uses every core.
 *
 * Every call settles: a batch whose worker dies fails with a {@link WorkerError}
 * and the worker is replaced; a worker that runs out of memory is replaced
 * before it gets more work, since a WebAssembly instance that failed to grow
 * may not recover; when no worker is left (replacements failing to start),
 * queued and later calls fail with the reason; `dispose()` fails queued and
 * running calls with a {@link DisposedError}.
 */
export class WorkerPoolRunner implements BatchRunner {
  /** Workers that have loaded their model and not died. */
  private readonly slots = new Set<Slot>();
  private readonly idle: Slot[] = [];
  private readonly waiting: Waiter[] = [];
  /** Every thread ever started and not yet exited, starting ones included, for dispose. */
  private readonly liveThreads = new Set<Worker>();
  private starting = 0;
  private lastStartFailure: Error | undefined;
  private nextId = 0;
  private disposed = false;
  /** Threads each worker's backend reported at start. */
  threads = 1;

  private constructor(private readonly setup: WorkerSetup) {}

  /** Workers running or starting; at least 1, so a plan always has somewhere to go. */
  get concurrency(): number {
    return Math.max(1, this.slots.size + this.starting);
  }

  /** One batch per worker. */
  get inFlight(): number {
    return this.concurrency;
  }

  /** Starts `size` workers and waits until each has loaded its model; the first failure fails the start. */
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
    const slot = await this.acquire();
    try {
      const output = await new Promise<BatchOutput>((resolve, reject) => {
        const id = this.nextId++;
        slot.pending = { id, resolve, reject };
        slot.worker.postMessage({ id, job } satisfies WorkerRequest);
      });
      slot.pending = undefined;
      this.release(slot);
      return output;
    } catch (error) {
      slot.pending = undefined;
      // A live worker threw: out of memory retires it, anything else leaves it usable.
      if (this.slots.has(slot)) {
        if (isOutOfMemory(error)) this.retire(slot);
        else this.release(slot);
      }
      throw error;
    }
  }

  private spawn(): Promise<Slot> {
    const here = fileURLToPath(import.meta.url);
    // Unbuilt (the test suite runs the .ts sources) the worker needs a TypeScript loader first.
    const entry = here.endsWith('.ts') ? './ts-worker.mjs' : './worker.js';
    // Started from a one-line script that imports the entry: a file entry would inherit the parent's
    // --input-type (under `node --input-type=module -e ...`) and refuse to start, while the parent's
    // other options (V8's among them) carry over as they should.
    const worker = new Worker(`import(${JSON.stringify(new URL(entry, import.meta.url).href)})`, { eval: true, workerData: this.setup });
    const slot: Slot = { worker, pending: undefined, retired: false, crash: undefined };
    this.liveThreads.add(worker);
    this.starting++;
    return new Promise<Slot>((resolve, reject) => {
      let ready = false;
      const startFailed = (error: Error) => {
        this.starting--;
        this.lastStartFailure = error;
        void worker.terminate();
        reject(error);
        this.failWaitersIfNoneLeft();
      };
      worker.on('message', (reply: WorkerReply) => {
        if (reply.type === 'ready') {
          ready = true;
          this.threads = reply.threads;
          this.starting--;
          this.slots.add(slot);
          resolve(slot);
        } else if (slot.pending !== undefined && slot.pending.id === reply.id) {
          if (reply.type === 'result') slot.pending.resolve({ vectors: reply.vectors, measuredPeakBytes: reply.measuredPeakBytes });
          else slot.pending.reject(deserializeError(reply.error));
        } else if (reply.type === 'error' && !ready) {
          ready = true; // settled: the exit that follows is expected
          startFailed(deserializeError(reply.error));
        }
      });
      worker.on('error', (error) => (slot.crash = error));
      worker.on('exit', (code) => {
        this.liveThreads.delete(worker);
        if (!ready) {
          ready = true;
          startFailed(new WorkerError(`a worker thread exited with code ${code} while loading the model${detail(slot.crash)}`, 'exited'));
          return;
        }
        this.onExit(slot, code);
      });
    });
  }

  /** A ready worker ended: fail its batch, if any, and replace it unless the pool is being disposed. */
  private onExit(slot: Slot, code: number): void {
    const wasLive = this.slots.delete(slot);
    this.removeIdle(slot);
    if (slot.pending !== undefined) {
      slot.pending.reject(
        this.disposed
          ? new DisposedError()
          : new WorkerError(`the worker thread running this batch exited with code ${code}${detail(slot.crash)}`, 'exited'),
      );
    }
    if (wasLive && !slot.retired) this.replace();
  }

  /** Ends a worker that ran out of memory and starts a fresh one in its place. */
  private retire(slot: Slot): void {
    slot.retired = true;
    this.slots.delete(slot);
    this.removeIdle(slot);
    void slot.worker.terminate();
    this.replace();
  }

  private replace(): void {
    if (this.disposed) return;
    this.spawn().then(
      (slot) => this.release(slot),
      () => {
        // The pool shrinks; failWaitersIfNoneLeft has told the waiting calls if it is empty.
      },
    );
  }

  private acquire(): Promise<Slot> {
    if (this.disposed) return Promise.reject(new DisposedError());
    const slot = this.idle.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.slots.size === 0 && this.starting === 0) return Promise.reject(this.noWorkersError());
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private release(slot: Slot): void {
    if (this.disposed || !this.slots.has(slot)) return;
    const next = this.waiting.shift();
    if (next !== undefined) next.resolve(slot);
    else this.idle.push(slot);
  }

  private removeIdle(slot: Slot): void {
    const index = this.idle.indexOf(slot);
    if (index >= 0) this.idle.splice(index, 1);
  }

  private failWaitersIfNoneLeft(): void {
    if (this.slots.size > 0 || this.starting > 0 || this.disposed) return;
    const error = this.noWorkersError();
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
  }

  private noWorkersError(): WorkerError {
    return new WorkerError(`no worker thread is left running${detail(this.lastStartFailure)}; load the embedder again`, 'no-workers');
  }

  /** Fails queued and running calls with a DisposedError and ends every thread; safe to call twice. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const error = new DisposedError();
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    for (const slot of this.slots) slot.pending?.reject(error);
    this.slots.clear();
    this.idle.length = 0;
    await Promise.all([...this.liveThreads].map((worker) => worker.terminate()));
  }
}

function detail(error: Error | undefined): string {
  return error === undefined ? '' : ` (${error.message})`;
}
