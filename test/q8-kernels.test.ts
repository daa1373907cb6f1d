import { describe, expect, it } from 'vitest';
import { q8KernelModule } from '../src/backends/q8/kernel-file.js';
import { instantiateQ8Kernels, type WasmMemory } from '../src/backends/q8/kernel-module.js';
import * as tf from '@tensorflow/tfjs-core';
import { F32Packer, packF32Weight, placeInJs } from '../src/backends/q8/q8-packer.js';
import { disposeWeight } from '../src/model/projection.js';
import { useBackend } from './helpers/backend.js';
import { f32MatMulReference } from './helpers/products.js';
import { CHUNKS_PER_THREAD, MIN_CHUNK_WORK, productGrid, ROWS_PER_CHUNK } from '../src/backends/q8/q8-threads.js';
import { ROW_BLOCK } from '../src/backends/q8/gemm-wat.js';
import { packedIndex, q8MatMulReference, quantizeRows, quantizeWeight, roundHalfEven } from '../src/weights/q8-codes.js';

/** A deterministic generator, so that a failure names inputs that can be remade. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function matrix(rows: number, columns: number, seed: number, spread = 1): Float32Array {
  const next = random(seed);
  return Float32Array.from({ length: rows * columns }, () => (next() * 2 - 1) * spread);
}

/** Lays out arrays 64-byte aligned in a fresh memory and runs the kernels on it. */
function onMemory(shared: boolean) {
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => WasmMemory } }).WebAssembly.Memory;
  const memory = new Memory({ initial: 64, maximum: 65536, shared });
  const kernels = instantiateQ8Kernels(q8KernelModule(shared), memory);
  let next = 64;
  const place = (bytes: number) => {
    const at = next;
    next = Math.ceil((next + bytes) / 64) * 64;
    if (next > memory.buffer.byteLength) memory.grow(Math.ceil((next - memory.buffer.byteLength) / 65536));
    return at;
  };
  return { memory, kernels, place };
}

describe.each([false, true])('q8 kernels (shared memory: %s)', (shared) => {
  it.each([
    [4, 16, 8],
    [7, 64, 64],
    [33, 256, 64],
    [130, 768, 72],
  ])('gemm of [%i, %i] × [%i, N] equals the exact integer reference bit for bit', (M, K, N) => {
    const { memory, kernels, place } = onMemory(shared);
    const x = matrix(M, K, M * 31 + K, 3);
    const weight = quantizeWeight(matrix(K, N, K * 7 + N, 0.05), K, N);
    const [xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt] = [M * K * 4, M * K * 2, M * 4, K * N, N * 4, M * N * 4].map(place);
    new Float32Array(memory.buffer, xAt, M * K).set(x);
    new Int8Array(memory.buffer, weightsAt, K * N).set(weight.codes);
    new Float32Array(memory.buffer, scalesAt, N).set(weight.scales);
    kernels.quantize_rows(xAt, M, K, codesAt, rowScalesAt);
    const rows = quantizeRows(x, M, K);
    expect([...new Int16Array(memory.buffer, codesAt, M * K)]).toEqual([...rows.codes]);
    expect([...new Float32Array(memory.buffer, rowScalesAt, M)]).toEqual([...rows.scales]);
    kernels.gemm(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, 0, M, 0, N);
    const expected = q8MatMulReference(x, M, K, weight, N);
    const actual = new Float32Array(memory.buffer, outAt, M * N);
    const wrong = [...actual].findIndex((v, i) => !Object.is(v, expected[i]));
    expect(wrong, wrong < 0 ? '' : `first mismatch at ${wrong}: ${actual[wrong]} against ${expected[wrong]}`).toBe(-1);
  });

  it.each([
    ['rows', 'a product by rows', [21, 32, 16], [6, 13, 0, 16]],
    ['columns', 'a product of few rows by columns', [5, 32, 40], [0, 5, 16, 32]],
  ] as const)('computes only the %s asked for, so that threads can split %s', (_, __, [M, K, N], [rowBegin, rowEnd, columnBegin, columnEnd]) => {
    const { memory, kernels, place } = onMemory(shared);
    const x = matrix(M, K, 5 + N);
    const weight = quantizeWeight(matrix(K, N, 6 + N), K, N);
    const [xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt] = [M * K * 4, M * K * 2, M * 4, K * N, N * 4, M * N * 4].map(place);
    new Float32Array(memory.buffer, xAt, M * K).set(x);
    new Int8Array(memory.buffer, weightsAt, K * N).set(weight.codes);
    new Float32Array(memory.buffer, scalesAt, N).set(weight.scales);
    new Float32Array(memory.buffer, outAt, M * N).fill(-1);
    kernels.quantize_rows(xAt, M, K, codesAt, rowScalesAt);
    kernels.gemm(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, rowBegin, rowEnd, columnBegin, columnEnd);
    const expected = q8MatMulReference(x, M, K, weight, N);
    const actual = new Float32Array(memory.buffer, outAt, M * N);
    const asked = (m: number, n: number) => m >= rowBegin && m < rowEnd && n >= columnBegin && n < columnEnd;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) expect(actual[m * N + n], `(${m}, ${n})`).toBe(asked(m, n) ? expected[m * N + n] : -1);
    }
  });

  it('sums without overflow or saturation at the largest codes over a long row', () => {
    const [M, K, N] = [4, 3072, 8];
    const { memory, kernels, place } = onMemory(shared);
    // Every activation and weight at ±full scale: each column's sum is ±127²·K, far beyond int16.
    const x = Float32Array.from({ length: M * K }, (_, i) => (i % 3 === 0 ? -2 : 2));
    const w = Float32Array.from({ length: K * N }, (_, i) => (Math.floor(i / N) % 3 === 0 ? -0.5 : 0.5) * (i % N === 0 ? -1 : 1));
    const weight = quantizeWeight(w, K, N);
    const [xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt] = [M * K * 4, M * K * 2, M * 4, K * N, N * 4, M * N * 4].map(place);
    new Float32Array(memory.buffer, xAt, M * K).set(x);
    new Int8Array(memory.buffer, weightsAt, K * N).set(weight.codes);
    new Float32Array(memory.buffer, scalesAt, N).set(weight.scales);
    kernels.quantize_rows(xAt, M, K, codesAt, rowScalesAt);
    kernels.gemm(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, 0, M, 0, N);
    const out = new Float32Array(memory.buffer, outAt, M * N);
    // x·w is exactly representable here: every product is ±1, K of them.
    for (let n = 0; n < N; n++) expect(out[n]).toBeCloseTo((n === 0 ? -1 : 1) * K, 2);
  });
});

describe.each([false, true])('the float32 kernel (shared memory: %s)', (shared) => {
  it.each([
    [4, 16, 8],
    [7, 64, 64],
    [33, 256, 64],
    [130, 768, 72],
    [5, 3072, 16],
  ])('gemm_f32 of [%i, %i] × [%i, N] adds in the order of k, bit for bit', (M, K, N) => {
    const { memory, kernels, place } = onMemory(shared);
    const x = matrix(M, K, M * 13 + K, 2);
    const w = matrix(K, N, K * 3 + N, 0.1);
    const [xAt, weightsAt, outAt] = [M * K * 4, K * N * 4, M * N * 4].map(place);
    new Float32Array(memory.buffer, xAt, M * K).set(x);
    packF32Weight(w, K, N, new Float32Array(memory.buffer, weightsAt, K * N));
    kernels.gemm_f32(xAt, M, K, weightsAt, N, outAt, 0, M, 0, N);
    const expected = f32MatMulReference(x, M, K, w, N);
    const actual = new Float32Array(memory.buffer, outAt, M * N);
    const wrong = [...actual].findIndex((v, i) => !Object.is(v, expected[i]));
    expect(wrong, wrong < 0 ? '' : `first mismatch at ${wrong}: ${actual[wrong]} against ${expected[wrong]}`).toBe(-1);
  });

  it('computes only the rows and columns asked for', () => {
    const [M, K, N] = [21, 32, 40];
    const { memory, kernels, place } = onMemory(shared);
    const x = matrix(M, K, 11);
    const w = matrix(K, N, 12);
    const [xAt, weightsAt, outAt] = [M * K * 4, K * N * 4, M * N * 4].map(place);
    new Float32Array(memory.buffer, xAt, M * K).set(x);
    packF32Weight(w, K, N, new Float32Array(memory.buffer, weightsAt, K * N));
    new Float32Array(memory.buffer, outAt, M * N).fill(-1);
    kernels.gemm_f32(xAt, M, K, weightsAt, N, outAt, 6, 13, 8, 24);
    const expected = f32MatMulReference(x, M, K, w, N);
    const actual = new Float32Array(memory.buffer, outAt, M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) expect(actual[m * N + n], `(${m}, ${n})`).toBe(m >= 6 && m < 13 && n >= 8 && n < 24 ? expected[m * N + n] : -1);
    }
  });
});

it('packs a float32 weight as [N/8][K][8]', () => {
  const [K, N] = [3, 16];
  const w = Float32Array.from({ length: K * N }, (_, i) => i);
  const packed = packF32Weight(w, K, N);
  // Block 0: rows 0..2 of columns 0..7, then block 1: columns 8..15.
  expect([...packed.subarray(0, 8)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect([...packed.subarray(8, 16)]).toEqual([16, 17, 18, 19, 20, 21, 22, 23]);
  expect([...packed.subarray(24, 32)]).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
});

it('leaves a float32 weight whose output width is not a multiple of 8 to a plain tensor, and packs the rest', async () => {
  await useBackend('cpu');
  const plain: number[][] = [];
  const packer = new F32Packer(placeInJs, (shape, weight) => (plain.push([...shape]), tf.tensor2d(weight, [shape[0], shape[1]])));
  const odd = packer.packSync([4, 12], (target) => target.fill(1));
  const even = packer.packSync([4, 16], (target) => target.fill(1));
  try {
    expect(odd).toBeInstanceOf(tf.Tensor);
    expect(plain).toEqual([[4, 12]]);
    expect(even).toMatchObject({ inner: 4, columns: 16 });
  } finally {
    disposeWeight(odd);
    disposeWeight(even);
  }
});

describe('q8 products shared between threads', () => {
  const covered = (m: number, k: number, n: number, threads: number) => {
    const grid = productGrid(m, k, n, threads);
    const cells = new Uint8Array(m * n);
    for (let chunk = 0; chunk < grid.chunks; chunk++) {
      const r0 = Math.floor(chunk / grid.columnChunks) * grid.rowsPerChunk;
      const c0 = (chunk % grid.columnChunks) * grid.columnsPerChunk;
      for (let r = r0; r < Math.min(m, r0 + grid.rowsPerChunk); r++) for (let c = c0; c < Math.min(n, c0 + grid.columnsPerChunk); c++) cells[r * n + c]++;
    }
    return cells.every((count) => count === 1);
  };

  it('cuts a batch into blocks of the kernel\'s rows, the weights streamed no more often than by one call', () => {
    expect(ROWS_PER_CHUNK).toBe(ROW_BLOCK);
    expect(productGrid(2048, 768, 3072, 2)).toEqual({ rowsPerChunk: 64, columnsPerChunk: 3072, columnChunks: 1, chunks: 32 });
    expect(covered(2048, 768, 3072, 2)).toBe(true);
  });

  it('cuts the columns too where the rows are few, in whole 8-column blocks, every output value in one chunk', () => {
    const query = productGrid(19, 768, 768, 2);
    expect(query.chunks).toBe(2 * CHUNKS_PER_THREAD);
    expect(query.columnsPerChunk % 8).toBe(0);
    expect(19 * 768 * query.columnsPerChunk).toBeGreaterThanOrEqual(MIN_CHUNK_WORK);
    for (const [m, k, n, threads] of [[19, 768, 768, 2], [130, 768, 2304, 2], [99, 3072, 200, 3], [5, 64, 4104, 2], [1, 768, 6144, 4]]) {
      expect(covered(m, k, n, threads), `${m}×${k}×${n} on ${threads}`).toBe(true);
    }
  });

  it('leaves a product whole on one thread, and where it is worth less than two chunks', () => {
    expect(productGrid(2048, 768, 3072, 1).chunks).toBe(1);
    expect(productGrid(4, 64, 64, 2).chunks).toBe(1);
    expect(productGrid(1, 768, 768, 2).chunks).toBe(1);
  });
});

describe('q8 quantization in JavaScript', () => {
  it('rounds halves to even, as f32x4.nearest does', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -2.5001].map((v) => roundHalfEven(v) + 0)).toEqual([0, 2, 2, 0, -2, -2, 2, -3]);
  });

  it('packs w(k, n) into 8-column blocks of K-pairs', () => {
    const [K, N] = [4, 16];
    const seen = new Set<number>();
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) seen.add(packedIndex(k, n, K));
    expect(seen.size).toBe(K * N);
    expect(Math.max(...seen)).toBe(K * N - 1);
    expect([packedIndex(0, 0, K), packedIndex(1, 0, K), packedIndex(0, 1, K), packedIndex(2, 0, K), packedIndex(0, 8, K)]).toEqual([0, 1, 2, 16, 32]);
  });

  it('keeps each column within half a step of its float value, and a zero column at zero', () => {
    const [K, N] = [64, 16];
    const w = matrix(K, N, 9, 0.1);
    for (let k = 0; k < K; k++) w[k * N + 3] = 0;
    const { codes, scales } = quantizeWeight(w, K, N);
    expect(scales[3]).toBe(0);
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const c = codes[packedIndex(k, n, K)];
        expect(Math.abs(c)).toBeLessThanOrEqual(127);
        expect(Math.abs(c * scales[n] - w[k * N + n])).toBeLessThanOrEqual(scales[n] / 2 + 1e-9);
      }
    }
  });
});
