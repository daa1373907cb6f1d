/**
 * What the relaxed-SIMD q8 road computes, run in a Node started with
 * `--experimental-wasm-relaxed-simd` (and `--no-liftoff`, so that Node 20's
 * wrong baseline tier never runs) by `relaxed-simd.test.ts`: prints one JSON
 * line. `--probe-only` stops after the probe; `--kernel-only` only loads a q8
 * embedder and says which product it runs (`NOMIC_EMBED_Q8_SIMD` as the
 * parent set it).
 */
import { q8KernelModule, q8RelaxedKernelModule } from '../../src/backends/q8/kernel-file.js';
import { instantiateQ8Kernels, instantiateRelaxedKernels, type WasmMemory } from '../../src/backends/q8/kernel-module.js';
import { spawnNodeHelpers } from '../../src/backends/q8/node-helpers.js';
import { Q8ThreadPool } from '../../src/backends/q8/q8-threads.js';
import { probeRelaxedProduct } from '../../src/backends/q8/relaxed-probe.js';
import { RELAXED_ACTIVATION_MAX, RELAXED_ACTIVATION_OFFSET } from '../../src/backends/q8/relaxed-wat.js';
import { describeQ8Product, q8ProductKernel } from '../../src/backends/q8/wasm-q8.js';
import { loadEmbedder } from '../../src/embedder.js';
import { packedIndex, q8MatMulReference, quantizeRows, quantizeWeight } from '../../src/weights/q8-codes.js';
import { cosine, FIXTURE_NAMES, fixtureDir, reference } from './fixtures.js';

const result: Record<string, unknown> = {
  probe: { single: probeRelaxedProduct(() => q8RelaxedKernelModule(false), false) ?? null, shared: probeRelaxedProduct(() => q8RelaxedKernelModule(true), true) ?? null },
};

if (process.argv.includes('--kernel-only')) {
  const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, threads: 1, dtype: 'q8' });
  result.kernel = q8ProductKernel();
  result.description = describeQ8Product();
  await embedder.dispose();
} else if (!process.argv.includes('--probe-only')) {
  result.kernels = [false, true].flatMap((shared) =>
    [
      [4, 16, 8],
      [7, 64, 64],
      [33, 256, 64],
      [130, 3072, 72],
    ].map(([M, K, N]) => ({ shape: [M, K, N], shared, ...checkKernels(shared, M, K, N) })),
  );
  result.threads = checkHelpers();
  result.fidelity = await fidelity();
  result.kernel = q8ProductKernel();
}
console.log(JSON.stringify(result));
process.exit(0);

function onMemory(shared: boolean) {
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => WasmMemory } }).WebAssembly.Memory;
  const memory = new Memory({ initial: 64, maximum: 65536, shared });
  let next = 64;
  const place = (bytes: number) => {
    const at = next;
    next = Math.ceil((next + bytes) / 64) * 64;
    if (next > memory.buffer.byteLength) memory.grow(Math.ceil((next - memory.buffer.byteLength) / 65536));
    return at;
  };
  return { memory, place };
}

/** Inputs with full-scale values, a zero row and negative values, remade from their sizes. */
function inputs(M: number, K: number, N: number) {
  const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37 + M) * (1 + (i % 7)));
  if (M > 2) x.fill(0, K, 2 * K);
  const weight = quantizeWeight(
    Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11 + N) * 0.05),
    K,
    N,
  );
  return { x, weight };
}

/** The inputs of an [M, K] × [K, N] product laid out in `memory`: x, the weight's codes (baseline layout) and scales, and room for the rest. */
function placeInputs(memory: WasmMemory, place: (bytes: number) => number, M: number, K: number, N: number) {
  const { x, weight } = inputs(M, K, N);
  const [xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt] = [M * K * 4, M * K, M * 4, K * N + 4 * N, N * 4, M * N * 4].map(place);
  new Float32Array(memory.buffer, xAt, M * K).set(x);
  new Int8Array(memory.buffer, weightsAt, K * N).set(weight.codes);
  new Float32Array(memory.buffer, scalesAt, N).set(weight.scales);
  return { x, weight, xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt };
}

/** The relaxed kernels on a fresh memory against the exact JavaScript reference: codes, column sums, the product and a part of it. */
function checkKernels(shared: boolean, M: number, K: number, N: number) {
  const { memory, place } = onMemory(shared);
  const kernels = instantiateRelaxedKernels(q8RelaxedKernelModule(shared), memory);
  const { x, weight, xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt } = placeInputs(memory, place, M, K, N);
  kernels.relax_codes(weightsAt, K, N);
  const relaxedCodes = new Int8Array(memory.buffer, weightsAt, K * N);
  let layoutExact = true;
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) {
      // [N/8][K/4][8][4]: block, quad, column within the block, row within the quad.
      const at = ((n >> 3) * (K >> 2) + (k >> 2)) * 32 + (n & 7) * 4 + (k & 3);
      if (relaxedCodes[at] !== weight.codes[packedIndex(k, n, K)]) layoutExact = false;
    }
  }
  const sums = new Int32Array(memory.buffer, weightsAt + K * N, N);
  let sumsExact = true;
  for (let n = 0; n < N; n++) {
    let sum = 0;
    for (let k = 0; k < K; k++) sum += weight.codes[packedIndex(k, n, K)];
    if (sums[n] !== RELAXED_ACTIVATION_OFFSET * sum) sumsExact = false;
  }
  kernels.quantize_rows_relaxed(xAt, M, K, codesAt, rowScalesAt);
  const rows = quantizeRows(x, M, K, RELAXED_ACTIVATION_MAX);
  const codes = new Uint8Array(memory.buffer, codesAt, M * K);
  const activationsExact =
    rows.codes.every((code, i) => codes[i] === code + RELAXED_ACTIVATION_OFFSET) && rows.scales.every((scale, i) => new Float32Array(memory.buffer, rowScalesAt, M)[i] === scale);
  const expected = q8MatMulReference(x, M, K, weight, N, RELAXED_ACTIVATION_MAX);
  const out = new Float32Array(memory.buffer, outAt, M * N);
  out.fill(Number.NaN);
  kernels.gemm_relaxed(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, 0, M, 0, N);
  const productExact = out.every((v, i) => v === expected[i]);
  // Rows 1..M-1 and the last block of columns only: nothing else written.
  out.fill(Number.NaN);
  kernels.gemm_relaxed(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, 1, M, N - 8, N);
  const rangeExact = out.every((v, i) => (Math.floor(i / N) >= 1 && i % N >= N - 8 ? v === expected[i] : Number.isNaN(v)));
  return { layoutExact, sumsExact, activationsExact, productExact, rangeExact };
}

/** A product shared with a helper thread on the relaxed kernel, repeated until the helper has taken chunks, against the reference. */
function checkHelpers() {
  const [M, K, N] = [300, 1024, 64];
  const { memory, place } = onMemory(true);
  const base = instantiateQ8Kernels(q8KernelModule(true), memory);
  const relaxed = instantiateRelaxedKernels(q8RelaxedKernelModule(true), memory);
  const pool = new Q8ThreadPool({ ...base, ...relaxed }, spawnNodeHelpers(q8KernelModule(true), q8RelaxedKernelModule(true), memory, 1));
  const { x, weight, xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt } = placeInputs(memory, place, M, K, N);
  relaxed.relax_codes(weightsAt, K, N);
  relaxed.quantize_rows_relaxed(xAt, M, K, codesAt, rowScalesAt);
  const expected = q8MatMulReference(x, M, K, weight, N, RELAXED_ACTIVATION_MAX);
  const out = new Float32Array(memory.buffer, outAt, M * N);
  let exact = true;
  let rounds = 0;
  while (pool.helperChunks === 0 && rounds < 200) {
    out.fill(Number.NaN);
    pool.run('gemm_relaxed', [codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt], M, K, N);
    exact &&= out.every((v, i) => v === expected[i]);
    rounds++;
  }
  pool.close();
  return { exact, helperChunks: pool.helperChunks };
}

/** q8 on the relaxed road against float32, on both fixtures, as the README states it. */
async function fidelity() {
  const figures: Record<string, { mean: number; worst: number; unchanged: number; texts: number }> = {};
  for (const fixture of FIXTURE_NAMES) {
    const texts = reference(fixture).texts.map((t) => t.text);
    const fp32 = await loadEmbedder(fixtureDir(fixture), { backend: 'wasm', workers: 1, threads: 1 });
    const q8 = await loadEmbedder(fixtureDir(fixture), { backend: 'wasm', workers: 1, threads: 1, dtype: 'q8' });
    const exact = (await fp32.embed(texts)).embeddings;
    const quantized = (await q8.embed(texts)).embeddings;
    await fp32.dispose();
    await q8.dispose();
    const cosines = texts.map((_, i) => cosine(exact[i], quantized[i]));
    figures[fixture] = {
      mean: cosines.reduce((a, b) => a + b, 0) / cosines.length,
      worst: Math.min(...cosines),
      unchanged: cosines.filter((c) => c === 1).length,
      texts: texts.length,
    };
  }
  return figures;
}
