import type { Q8Kernels } from './kernel-module.js';

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

/**
 * A helper's loop, as the source of a function of `(module, memory, control,
 * index)`: Node's worker threads and a page's Web Workers each wrap it in
 * the way they receive those four (see `node-helpers.ts`, `page-kernels.ts`).
 */
export const HELPER_LOOP = `
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

/** Threads running {@link HELPER_LOOP} on one control block. */
export interface ProductHelpers {
  readonly control: Int32Array;
  /** Helper i runs with index i. */
  readonly threads: readonly { terminate(): unknown }[];
}

/** The control block for `helpers` helpers: shared where there are any, so a runtime without SharedArrayBuffer runs the kernels too. */
export function helperControl(helpers: number): Int32Array {
  const bytes = (helpers + 1) * SLOTS * 4;
  return new Int32Array(helpers > 0 ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
}

/** No helpers: the calling thread runs every product. */
export const NO_HELPERS: ProductHelpers = { control: helperControl(0), threads: [] };

/**
 * Whether this thread may block in `Atomics.wait`: a page's main thread may
 * not (it spins on the helpers' answers instead, as Emscripten's threads do
 * there).
 */
function mayBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1);
    return true;
  } catch {
    return false;
  }
}

export class Q8ThreadPool {
  private readonly control: Int32Array;
  private readonly workers: readonly { terminate(): unknown }[];
  private readonly blocks: boolean;
  private generation = 0;

  constructor(
    private readonly kernels: Q8Kernels,
    helpers: ProductHelpers = NO_HELPERS,
  ) {
    this.control = helpers.control;
    this.workers = helpers.threads;
    this.blocks = this.workers.length === 0 || mayBlock();
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
      for (let seen = Atomics.load(this.control, done); seen !== generation; seen = Atomics.load(this.control, done)) {
        if (this.blocks) Atomics.wait(this.control, done, seen);
      }
    }
  }

  /** Stops the helpers. */
  close(): void {
    Atomics.store(this.control, 0, -1);
    Atomics.notify(this.control, 0);
    for (const worker of this.workers) void worker.terminate();
  }
}
