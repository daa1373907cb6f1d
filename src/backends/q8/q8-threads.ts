import type { Q8Kernels, RelaxedKernels } from './kernel-module.js';

/**
 * Our products (q8 and float32) on every core: threads of our own that share the threaded
 * wasm build's memory, each with the kernel module instantiated on it, split
 * a product with the calling thread. The product is cut into a grid of
 * chunks (blocks of rows, and of columns where the rows are few), and each
 * thread claims the next chunk until none is left, so a thread the system
 * runs late (tfjs's own pool threads spin for a while after each of its ops,
 * on the same cores) takes fewer chunks instead of holding the product up.
 * Each output value is still computed by one kernel call over all of k, so
 * the result equals the single-threaded one bit for bit, whoever computes it.
 * The threads are woken and waited for with `Atomics` on a small shared
 * control block, no messages: a wake-up costs microseconds.
 *
 * Control block (int32), see the slot names below: the generation (negative:
 * stop), the claim word `(generation mod 2²⁰) · 2¹¹ + next chunk` (one
 * compare-and-swap claims a chunk of this product and no other), the chunks
 * finished, the kernel and its grid, and from {@link ARGS} the kernel's
 * leading arguments.
 */
const GENERATION = 0;
const CLAIM = 1;
const COMPLETED = 2;
const KERNEL = 3;
const ROWS = 4;
const COLUMNS = 5;
const CHUNK_ROWS = 6;
const CHUNK_COLUMNS = 7;
const COLUMN_CHUNKS = 8;
const CHUNKS = 9;
const ARGS = 16;
const SLOTS = 32;
/** Bits of the claim word that count chunks: a product has at most 2¹¹ of them. */
const CHUNK_BITS = 11;
export const MAX_CHUNKS = 1 << CHUNK_BITS;

/** The kernels a helper runs, by the number in the KERNEL slot. */
export const PRODUCT_KERNELS = ['gemm', 'gemm_f32', 'gemm_relaxed'] as const;
export type ProductKernel = (typeof PRODUCT_KERNELS)[number];
/** The product kernels the pool runs on this thread: the baseline module's, and the relaxed one's where it is used. */
export type ProductFunctions = Pick<Q8Kernels, 'gemm' | 'gemm_f32'> & Partial<Pick<RelaxedKernels, 'gemm_relaxed'>>;

/** Rows per chunk: the kernel's own block of rows (`ROW_BLOCK`), so that chunks stream the weights no more often than one call does. */
export const ROWS_PER_CHUNK = 64;
/** Chunks per thread that a product is cut into where it can be: enough for the threads to even out, few enough to cost nothing. */
export const CHUNKS_PER_THREAD = 4;
/** Below this many multiply-adds a chunk costs less than a wake-up (about 25 µs of one core): fewer, wider chunks then. */
export const MIN_CHUNK_WORK = 1 << 20;

/** How an [m, k] × [k, n] product is cut for `threads` threads: chunk i covers row block ⌊i / columnChunks⌋ and column block i mod columnChunks. */
export interface ProductGrid {
  readonly rowsPerChunk: number;
  /** A multiple of 8, the kernel's column block. */
  readonly columnsPerChunk: number;
  readonly columnChunks: number;
  readonly chunks: number;
}

export function productGrid(m: number, k: number, n: number, threads: number): ProductGrid {
  const rowChunks = Math.ceil(m / ROWS_PER_CHUNK);
  const rowsPerChunk = Math.min(m, ROWS_PER_CHUNK);
  const narrowest = Math.ceil(MIN_CHUNK_WORK / (rowsPerChunk * k) / 8) * 8;
  const wanted = threads === 1 ? 1 : Math.ceil((threads * CHUNKS_PER_THREAD) / rowChunks);
  const columnChunks = Math.max(1, Math.min(wanted, Math.floor(n / narrowest), Math.floor(MAX_CHUNKS / rowChunks)));
  const columnsPerChunk = Math.ceil(n / columnChunks / 8) * 8;
  const chunks = threads === 1 ? 1 : rowChunks * Math.ceil(n / columnsPerChunk);
  // One chunk of less than the minimum work: not worth waking anyone.
  if (chunks === 1 || m * k * n < 2 * MIN_CHUNK_WORK) return { rowsPerChunk: m, columnsPerChunk: n, columnChunks: 1, chunks: 1 };
  return { rowsPerChunk, columnsPerChunk, columnChunks: Math.ceil(n / columnsPerChunk), chunks };
}

/**
 * A helper's loop, as the source of a function of `(module, relaxed, memory,
 * control)` (`relaxed` the relaxed-SIMD module, or undefined): Node's worker
 * threads and a page's Web Workers each wrap it in the way they receive
 * those four (see `node-helpers.ts`, `page-kernels.ts`).
 * Its claiming is {@link Q8ThreadPool}'s, written again in plain JavaScript.
 */
export const HELPER_LOOP = `
const { gemm, gemm_f32 } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const gemm_relaxed = relaxed === undefined ? undefined : new WebAssembly.Instance(relaxed, { env: { memory } }).exports.gemm_relaxed;
const c = new Int32Array(control);
let seen = 0;
for (;;) {
  Atomics.wait(c, ${GENERATION}, seen);
  const generation = Atomics.load(c, ${GENERATION});
  if (generation < 0) break;
  if (generation === seen) continue;
  seen = generation;
  const tag = generation & ${(1 << (31 - CHUNK_BITS)) - 1};
  for (;;) {
    const claim = Atomics.load(c, ${CLAIM});
    const chunk = claim & ${MAX_CHUNKS - 1};
    if (claim >>> ${CHUNK_BITS} !== tag || chunk >= c[${CHUNKS}]) break;
    if (Atomics.compareExchange(c, ${CLAIM}, claim, claim + 1) !== claim) continue;
    const r0 = Math.floor(chunk / c[${COLUMN_CHUNKS}]) * c[${CHUNK_ROWS}];
    const c0 = (chunk % c[${COLUMN_CHUNKS}]) * c[${CHUNK_COLUMNS}];
    const r1 = Math.min(c[${ROWS}], r0 + c[${CHUNK_ROWS}]);
    const c1 = Math.min(c[${COLUMNS}], c0 + c[${CHUNK_COLUMNS}]);
    const a = ${ARGS};
    const kernel = c[${KERNEL}];
    if (kernel === 1) gemm_f32(c[a], c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], r0, r1, c0, c1);
    else (kernel === 0 ? gemm : gemm_relaxed)(c[a], c[a + 1], c[a + 2], c[a + 3], c[a + 4], c[a + 5], c[a + 6], c[a + 7], r0, r1, c0, c1);
    Atomics.add(c, ${COMPLETED}, 1);
    Atomics.notify(c, ${COMPLETED});
  }
}
`;

/** Threads running {@link HELPER_LOOP} on one control block. */
export interface ProductHelpers {
  readonly control: Int32Array;
  readonly threads: readonly { terminate(): unknown }[];
}

/** The control block for `helpers` helpers: shared where there are any, so a runtime without SharedArrayBuffer runs the kernels too. */
export function helperControl(helpers: number): Int32Array {
  const bytes = SLOTS * 4;
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
  /** Chunks the helpers have computed, over the pool's life: how much of the work they take. */
  helperChunks = 0;

  constructor(
    private readonly kernels: ProductFunctions,
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
   * `kernel` over the whole [m, n] output of a product of inner width k,
   * shared with the helpers: `leading` are its arguments before the row and
   * column range (`gemm` and `gemm_relaxed`: codes, rowScales, m, k,
   * weights, columnScales, n, out; `gemm_f32`: x, m, k, weights, n, out).
   */
  run(kernel: ProductKernel, leading: readonly number[], m: number, k: number, n: number): void {
    const run = this.kernels[kernel];
    if (run === undefined) throw new Error(`the ${kernel} kernel is not installed`);
    const call = (r0: number, r1: number, c0: number, c1: number) => (run as (...args: number[]) => void)(...leading, r0, r1, c0, c1);
    const grid = productGrid(m, k, n, this.threads);
    if (grid.chunks === 1) return call(0, m, 0, n);
    const c = this.control;
    // Positive int32 always: a negative generation tells the helpers to stop.
    const generation = (this.generation = (this.generation % 0x7fffffff) + 1);
    c.set(leading, ARGS);
    c[KERNEL] = PRODUCT_KERNELS.indexOf(kernel);
    c[ROWS] = m;
    c[COLUMNS] = n;
    c[CHUNK_ROWS] = grid.rowsPerChunk;
    c[CHUNK_COLUMNS] = grid.columnsPerChunk;
    c[COLUMN_CHUNKS] = grid.columnChunks;
    c[CHUNKS] = grid.chunks;
    Atomics.store(c, COMPLETED, 0);
    const tag = generation & ((1 << (31 - CHUNK_BITS)) - 1);
    // The claim word is opened last: a helper that sees this product's tag sees all of the above.
    Atomics.store(c, CLAIM, tag << CHUNK_BITS);
    Atomics.store(c, GENERATION, generation);
    Atomics.notify(c, GENERATION);
    let mine = 0;
    for (;;) {
      const claim = Atomics.load(c, CLAIM);
      const chunk = claim & (MAX_CHUNKS - 1);
      if (chunk >= grid.chunks) break;
      if (Atomics.compareExchange(c, CLAIM, claim, claim + 1) !== claim) continue;
      const r0 = Math.floor(chunk / grid.columnChunks) * grid.rowsPerChunk;
      const c0 = (chunk % grid.columnChunks) * grid.columnsPerChunk;
      call(r0, Math.min(m, r0 + grid.rowsPerChunk), c0, Math.min(n, c0 + grid.columnsPerChunk));
      mine++;
    }
    Atomics.add(c, COMPLETED, mine);
    // Wait on the very value compared: loading it again for the wait could read the last helper's count and sleep on it for ever.
    for (let done = Atomics.load(c, COMPLETED); done < grid.chunks; done = Atomics.load(c, COMPLETED)) {
      if (this.blocks) Atomics.wait(c, COMPLETED, done);
    }
    this.helperChunks += grid.chunks - mine;
  }

  /** Stops the helpers. */
  close(): void {
    Atomics.store(this.control, GENERATION, -1);
    Atomics.notify(this.control, GENERATION);
    for (const worker of this.workers) void worker.terminate();
  }
}
