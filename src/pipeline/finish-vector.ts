import type { Pooling } from './pooling.js';

/** What a caller asked of each vector. */
export interface OutputSpec {
  readonly pooling: Pooling;
  /** Output size; the hidden size unless Matryoshka truncation was asked for. */
  readonly dimensions: number;
  /** Apply Nomic's Matryoshka recipe (layer norm, truncate, L2) rather than plain L2. */
  readonly matryoshka: boolean;
  readonly normalize: boolean;
}

/** Epsilon of the affine-free layer norm in Nomic's Matryoshka recipe (`F.layer_norm` default). */
export const MATRYOSHKA_LAYER_NORM_EPS = 1e-5;

/**
 * The output step of one pooled vector: L2 normalisation as
 * `torch.nn.functional.normalize`, Nomic's Matryoshka recipe (layer norm
 * without affine parameters over the full vector, keep the first
 * `dimensions` values, L2-normalise: so a 256-d vector is not simply the
 * first 256 values of the 768-d one), or the raw vector cut to size. It runs
 * on read-back vectors, so texts that ask for different outputs share a
 * forward pass. Sums run in float64; results are rounded to float32 once.
 */
export function finishVector(pooled: Float32Array, output: Omit<OutputSpec, 'pooling'>): Float32Array {
  const { dimensions, matryoshka, normalize } = output;
  if (!normalize) return pooled.slice(0, dimensions);
  if (!matryoshka) return l2(pooled.slice(0, dimensions));
  // Layer norm without affine parameters over the whole vector, then truncation, then L2.
  const n = pooled.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += pooled[i];
  mean /= n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (pooled[i] - mean) ** 2;
  variance /= n;
  const scale = 1 / Math.sqrt(variance + MATRYOSHKA_LAYER_NORM_EPS);
  const cut = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) cut[i] = (pooled[i] - mean) * scale;
  return l2(cut);
}

/** `x / max(‖x‖₂, 1e-12)` in place, as torch.nn.functional.normalize. */
function l2(x: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
  const scale = 1 / Math.max(Math.sqrt(sum), 1e-12);
  for (let i = 0; i < x.length; i++) x[i] *= scale;
  return x;
}
