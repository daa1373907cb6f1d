import { MATRYOSHKA_LAYER_NORM_EPS } from './matryoshka.js';
import type { OutputSpec } from './batch-job.js';

/**
 * The output step of one pooled vector, in plain JavaScript: the same recipe
 * as the tensor stages (plain L2 normalisation, Nomic's Matryoshka recipe, or
 * the raw vector cut to size), for callers that pool many requests' texts in
 * one forward pass and finish each vector as its own request asks (the
 * server). Sums run in float64, so results agree with the tensor stages to
 * float32 rounding.
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
