import * as tf from '@tensorflow/tfjs-core';
import { layerNorm } from './layer-norm.js';

/**
 * Operations that a backend may run as one fused kernel of its own. The ops
 * live here, with the model; the kernels live with their backend
 * (`backends/webgpu`) and register under these names, as tfjs's own ops and
 * kernels are split. Where no kernel is registered, `residualLayerNorm` falls
 * back to its tfjs composite, which is also what its kernel is tested against.
 */

/** softmax(q·kᵀ + bias)·v with a blockwise online softmax. */
export const FUSED_ATTENTION = 'NomicFusedAttention';
/** LayerNorm(x + residual) · gamma + beta over the last axis. */
export const RESIDUAL_LAYER_NORM = 'NomicResidualLayerNorm';

export interface ResidualLayerNormAttrs {
  readonly epsilon: number;
}

/** Whether the active backend has its own kernel for `name`. */
export function hasFusedKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * Attention of rotated, pre-scaled queries over keys and values, all
 * [B, H, T, hd], with an optional [B, 1, 1, T] additive key bias. Only
 * backends with a fused kernel run it; the caller picks the kernel with
 * {@link hasFusedKernel} or `defaultAttentionKernel`. The caller disposes the result.
 */
export function fusedAttention(
  queries: tf.Tensor4D,
  keys: tf.Tensor4D,
  values: tf.Tensor4D,
  maskBias: tf.Tensor4D | undefined,
): tf.Tensor4D {
  if (!hasFusedKernel(FUSED_ATTENTION)) {
    throw new Error(`the ${tf.getBackend()} backend has no fused attention kernel; use the batched or per-head kernel`);
  }
  const [B, , T] = queries.shape;
  const bias = maskBias ?? tf.zeros([B, 1, 1, T]);
  try {
    return tf.engine().runKernel(FUSED_ATTENTION, { queries, keys, values, bias } as unknown as tf.NamedTensorMap, {}) as tf.Tensor4D;
  } finally {
    if (maskBias === undefined) bias.dispose();
  }
}

/** `LayerNorm(x + residual)` with torch's biased variance. x, residual: [N, D]. The caller disposes the result. */
export function residualLayerNorm(
  x: tf.Tensor2D,
  residual: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): tf.Tensor2D {
  if (hasFusedKernel(RESIDUAL_LAYER_NORM)) {
    const attrs: ResidualLayerNormAttrs = { epsilon };
    return tf.engine().runKernel(RESIDUAL_LAYER_NORM, { x, residual, gamma, beta }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
  }
  return residualLayerNormComposite(x, residual, gamma, beta, epsilon);
}

/** The same as separate tfjs ops. */
export function residualLayerNormComposite(
  x: tf.Tensor2D,
  residual: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): tf.Tensor2D {
  return tf.tidy(() => layerNorm(tf.add(x, residual), epsilon, gamma, beta) as tf.Tensor2D);
}
