import { instantiateQ8Kernels, instantiateRelaxedKernels, newKernelMemory, type WasmModule } from './kernel-module.js';

/**
 * How fast each q8 product runs in this engine, timed side by side: being
 * exact (`relaxed-probe.ts`) does not make the relaxed kernel the faster one.
 * Node 22's V8 computes `relaxed_dot_i8x16_i7x16_add_s` exactly but without
 * VNNI, and there the relaxed kernel ran at 46–51 GOP/s against the
 * baseline's 60–66; Node 24's and Chromium's run it at twice the baseline.
 *
 * Both kernels are instantiated on a memory of their own (the instances share
 * their modules' compiled code, so the optimization the timing waits for is
 * the one the model gets), on one small product that stays in the cache:
 * row quantization and product together, as each projection runs them.
 */
const M = 16;
const K = 768;
const N = 64;
/** Products per timed sample: about half a millisecond at the baseline's rate, well above the clock's resolution. */
const CALLS_PER_SAMPLE = 16;
/**
 * How long samples alternate: the optimizing compiler takes over a hot
 * function within 2–5 ms (it compiles on another thread), so the fastest
 * sample of each kernel after this long is its optimized rate.
 */
export const RACE_MS = 20;

/** Each kernel's rate in GOP/s (a multiply and an add per weight and row). */
export interface ProductRates {
  relaxed: number;
  baseline: number;
}

/** Times the baseline product of `module` against the relaxed one of `relaxedModule` (both built for a shared memory or not, as `shared` says). */
export function raceProducts(module: WasmModule, relaxedModule: WasmModule, shared: boolean): ProductRates {
  const pages = 4;
  const memory = newKernelMemory(pages, shared);
  const baseline = instantiateQ8Kernels(module, memory);
  const relaxed = instantiateRelaxedKernels(relaxedModule, memory);

  let next = 0;
  const place = (bytes: number) => {
    const at = next;
    next = Math.ceil((next + bytes) / 64) * 64;
    if (next > pages * 65536) throw new Error(`the product race needs more than ${pages} pages`);
    return at;
  };
  const x = place(M * K * 4);
  const codes = place(M * K * 2);
  const rowScales = place(M * 4);
  const baselineWeights = place(K * N);
  const relaxedWeights = place(K * N + N * 4);
  const columnScales = place(N * 4);
  const out = place(M * N * 4);
  new Float32Array(memory.buffer, x, M * K).set(Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37)));
  const weightCodes = Int8Array.from({ length: K * N }, (_, i) => ((i * 37) % 255) - 127);
  new Int8Array(memory.buffer, baselineWeights, K * N).set(weightCodes);
  new Int8Array(memory.buffer, relaxedWeights, K * N).set(weightCodes);
  new Float32Array(memory.buffer, columnScales, N).fill(1 / 127);
  relaxed.relax_codes(relaxedWeights, K, N);

  const runBaseline = () => {
    baseline.quantize_rows(x, M, K, codes, rowScales);
    baseline.gemm(codes, rowScales, M, K, baselineWeights, columnScales, N, out, 0, M, 0, N);
  };
  const runRelaxed = () => {
    relaxed.quantize_rows_relaxed(x, M, K, codes, rowScales);
    relaxed.gemm_relaxed(codes, rowScales, M, K, relaxedWeights, columnScales, N, out, 0, M, 0, N);
  };
  const sample = (run: () => void) => {
    const start = performance.now();
    for (let call = 0; call < CALLS_PER_SAMPLE; call++) run();
    return performance.now() - start;
  };
  let fastestBaseline = Infinity;
  let fastestRelaxed = Infinity;
  const start = performance.now();
  while (performance.now() - start < RACE_MS) {
    fastestRelaxed = Math.min(fastestRelaxed, sample(runRelaxed));
    fastestBaseline = Math.min(fastestBaseline, sample(runBaseline));
  }
  const rate = (ms: number) => (2 * M * K * N * CALLS_PER_SAMPLE) / (ms * 1e6);
  return { relaxed: rate(fastestRelaxed), baseline: rate(fastestBaseline) };
}
