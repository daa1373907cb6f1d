import { Worker } from 'node:worker_threads';
import type { Q8Kernels, WasmMemory } from './kernel-module.js';

/**
 * Our products (q8 and float32) on every core: threads of our own that share the threaded
 * wasm build's memory, each with the kernel module instantiated on it, split
 * a product with the calling thread: by rows, or by columns where it has too
 * few rows (one short query's products). They are woken and waited for
 * with `Atomics` on a small shared control block, no messages: a wake-up costs
 * microseconds, against milliseconds for a product worth splitting.
 *
 * Control block (int32): slot 0 the generation (negative: stop); for helper
 * i, 16 slots from 16·(i+1): the kernel's arguments (its leading ones, then
 * the row and column range), at +14 which kernel (see {@link Q8ThreadPool.run}),
 * at +15 the generation it last finished.
 */
const SLOTS = 16;
const KERNEL = 14;
const DONE = 15;
/** The kernels a helper runs, by the number in its KERNEL slot. */
export const PRODUCT_KERNELS = ['gemm', 'gemm_f32'] as const;
export type ProductKernel = (typeof PRODUCT_KERNELS)[number];

/** Below this many rows per thread, a split by rows leaves the threads too little to do; columns are split instead. */
export const MIN_ROWS_PER_THREAD = 16;
/** Below this many columns per thread (a product of a few rows is then microseconds), waking a helper costs more than it saves. */
export const MIN_COLUMNS_PER_THREAD = 64;

/** The helper's whole program; an eval'd worker, so that it loads from `src/` and `dist/` alike. */
const HELPER = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, index } = workerData;
const { gemm, gemm_f32 } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const c = new Int32Array(control);
const base = ${SLOTS} * (index + 1);
let seen = 0;
for (;;) {
  Atomics.wait(c, 0, seen);
  const generation = Atomics.load(c, 0);
  if (generation < 0) break;
  if (generation === seen) continue;
  seen = generation;
  if (c[base + ${KERNEL}] === 0) gemm(c[base], c[base + 1], c[base + 2], c[base + 3], c[base + 4], c[base + 5], c[base + 6], c[base + 7], c[base + 8], c[base + 9], c[base + 10], c[base + 11]);
  else gemm_f32(c[base], c[base + 1], c[base + 2], c[base + 3], c[base + 4], c[base + 5], c[base + 6], c[base + 7], c[base + 8], c[base + 9]);
  Atomics.store(c, base + ${DONE}, generation);
  Atomics.notify(c, base + ${DONE});
}
`;

/**
 * Each thread's [rowBegin, rowEnd, columnBegin, columnEnd] of an [m, n]
 * product, the caller's last (it may be short): whole tiles of 4 rows where
 * there are enough rows, else whole blocks of 8 columns; one share where
 * neither is worth a wake-up.
 */
export function productShares(m: number, n: number, threads: number): [number, number, number, number][] {
  const byRows = Math.min(threads, Math.floor(m / MIN_ROWS_PER_THREAD));
  if (byRows > 1) {
    const share = Math.ceil(m / byRows / 4) * 4;
    return Array.from({ length: byRows }, (_, i) => [Math.min(m, i * share), i === byRows - 1 ? m : Math.min(m, (i + 1) * share), 0, n]);
  }
  const byColumns = Math.max(1, Math.min(threads, Math.floor(n / MIN_COLUMNS_PER_THREAD)));
  const share = Math.ceil(n / byColumns / 8) * 8;
  return Array.from({ length: byColumns }, (_, i) => [0, m, Math.min(n, i * share), i === byColumns - 1 ? n : Math.min(n, (i + 1) * share)]);
}

export class Q8ThreadPool {
  private readonly control: Int32Array;
  private readonly workers: Worker[];
  private generation = 0;

  /** `helpers` threads besides the caller's, on `memory` (shared; none needed without helpers), running `module`. */
  constructor(
    module: object,
    memory: WasmMemory | undefined,
    helpers: number,
    private readonly kernels: Q8Kernels,
  ) {
    // Without helpers nothing is shared, and a runtime without SharedArrayBuffer runs the kernels too.
    const bytes = (helpers + 1) * SLOTS * 4;
    this.control = new Int32Array(helpers > 0 ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    this.workers = Array.from({ length: helpers }, (_, index) => {
      const worker = new Worker(HELPER, { eval: true, workerData: { module, memory, control: this.control.buffer, index } });
      // Idle helpers wait on the control block; they must not keep the process alive.
      worker.unref();
      return worker;
    });
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * `kernel` over the whole [m, n] output, split over the helpers and the
   * calling thread: `leading` are its arguments before the row and column
   * range (`gemm`: codes, rowScales, m, k, weights, columnScales, n, out;
   * `gemm_f32`: x, m, k, weights, n, out).
   */
  run(kernel: ProductKernel, leading: readonly number[], m: number, n: number): void {
    const parts = productShares(m, n, this.threads);
    const call = (range: readonly number[]) => (this.kernels[kernel] as (...args: number[]) => void)(...leading, ...range);
    if (parts.length === 1) return call(parts[0]);
    // Positive int32 always: a negative generation tells the helpers to stop.
    const generation = (this.generation = (this.generation % 0x7fffffff) + 1);
    const helpers = parts.length - 1;
    for (let i = 0; i < this.workers.length; i++) {
      const base = SLOTS * (i + 1);
      // Helpers without a share this time get an empty range, and answer at once.
      this.control.set([...leading, ...(i < helpers ? parts[i] : [0, 0, 0, 0])], base);
      this.control[base + KERNEL] = PRODUCT_KERNELS.indexOf(kernel);
    }
    Atomics.store(this.control, 0, generation);
    Atomics.notify(this.control, 0);
    call(parts[helpers]);
    for (let i = 0; i < this.workers.length; i++) {
      const done = SLOTS * (i + 1) + DONE;
      // Wait on the very value compared: loading it again for the wait could read the helper's answer and sleep on it for ever.
      for (let seen = Atomics.load(this.control, done); seen !== generation; seen = Atomics.load(this.control, done)) Atomics.wait(this.control, done, seen);
    }
  }

  /** Stops the helpers. */
  close(): void {
    Atomics.store(this.control, 0, -1);
    Atomics.notify(this.control, 0);
    for (const worker of this.workers) void worker.terminate();
  }
}
