import { quantize } from '../../src/pipeline/quantize.js';
import { cosineTopK, hammingTopK } from '../../src/search/top-k.js';

/**
 * Top-10 over 100,000 random 768-d vectors: cosine over one float32 matrix,
 * and Hamming over the same vectors packed as binary. Median of 5 runs, in ms.
 */
export function benchSearch(rows = 100_000, dimensions = 768, runs = 5): { cosineMs: number; hammingMs: number; rows: number; dimensions: number } {
  let state = 1;
  const next = () => ((state = (state * 1664525 + 1013904223) % 2 ** 32) / 2 ** 32) - 0.5;
  const data = Float32Array.from({ length: rows * dimensions }, next);
  const query = Float32Array.from({ length: dimensions }, next);
  const bytes = dimensions / 8;
  const packed = new Uint8Array(rows * bytes);
  for (let r = 0; r < rows; r++) packed.set(quantize(data.subarray(r * dimensions, (r + 1) * dimensions), 'ubinary'), r * bytes);
  const packedQuery = quantize(query, 'ubinary');
  const median = (f: () => void) => {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      f();
      times.push(performance.now() - started);
    }
    return times.sort((a, b) => a - b)[runs >> 1];
  };
  return {
    rows,
    dimensions,
    cosineMs: median(() => cosineTopK(query, { data, dimensions }, 10)),
    hammingMs: median(() => hammingTopK(packedQuery, { data: packed, dimensions: bytes }, 10)),
  };
}
