import * as tf from '@tensorflow/tfjs-core';
import { layerNorm } from './layer-norm.js';
import { applyRotary, type RotaryTables } from './rotary.js';

/**
 * Operations that a backend may run as one fused kernel of its own. The ops
 * live here, with the model; the kernels live with their backend
 * (`backends/webgpu`, `backends/wasm-fused.ts`) and register under these
 * names, as tfjs's own ops and kernels are split. Where no kernel is
 * registered, `residualLayerNorm` and `rotaryHeads` fall back to their tfjs
 * composites, which are also what their kernels are tested against.
 */

/** Rotary, scale and softmax(q·kᵀ + bias)·v in one pass, with a blockwise online softmax. */
export const FUSED_ATTENTION = 'NomicRotaryAttention';
/** up · gate · sigmoid(gate): SwiGLU's elementwise step. */
export const SWIGLU = 'NomicSwiglu';
/** LayerNorm(x + residual) · gamma + beta over the last axis. */
export const RESIDUAL_LAYER_NORM = 'NomicResidualLayerNorm';

/** One projection's heads, rotated and scaled: [B·T, D] → [B, H, T, hd]. */
export const ROTARY_HEADS = 'NomicRotaryHeads';

export interface ResidualLayerNormAttrs {
  readonly epsilon: number;
}

export interface FusedAttentionAttrs {
  /** Applied to the queries after rotation: 1/√hd. */
  readonly scale: number;
}

export interface RotaryHeadsAttrs {
  readonly batch: number;
  readonly heads: number;
  /** Applied after rotation: 1/√hd for queries, 1 for keys. */
  readonly scale: number;
}

/** Whether the active backend has its own kernel for `name`. */
export function hasFusedKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * Self-attention in the projections' own layout: queries, keys and values
 * [B, T, H, hd] (the matMuls' [B·T, D] output, reshaped), rotary tables
 * [R, T, hd/2] (R = 1, or B when NTK scaling gives rows their own), an
 * optional [B, 1, 1, T] additive key bias. Queries and keys are rotated
 * (rotate-half), queries scaled by `scale`, and softmax(q·kᵀ + bias)·v
 * returned as [B, T, H, hd]. Only backends with the fused kernel run it; see
 * the `webgpu` backend object (`backends/backend.ts`). The caller disposes the result.
 */
export function fusedAttention(
  queries: tf.Tensor4D,
  keys: tf.Tensor4D,
  values: tf.Tensor4D,
  rotary: { readonly cos: tf.Tensor3D; readonly sin: tf.Tensor3D },
  maskBias: tf.Tensor4D | undefined,
  scale: number,
): tf.Tensor4D {
  if (!hasFusedKernel(FUSED_ATTENTION)) {
    throw new Error(`the ${tf.getBackend()} backend has no fused attention kernel; use the batched or per-head kernel`);
  }
  const [B, T] = queries.shape;
  const bias = maskBias ?? tf.zeros([B, 1, 1, T]);
  try {
    const inputs = { queries, keys, values, cosines: rotary.cos, sines: rotary.sin, bias };
    const attrs: FusedAttentionAttrs = { scale };
    return tf.engine().runKernel(FUSED_ATTENTION, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
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

/**
 * SwiGLU's elementwise step, `up · silu(gate)`, as the backend's fused kernel.
 * Only called where one is registered (the MLP frees the composite's
 * intermediates one by one elsewhere). The caller disposes the result.
 */
export function fusedSwiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  return tf.engine().runKernel(SWIGLU, { gate, up }) as tf.Tensor2D;
}

/**
 * A projection's output [B·T, D] as heads [B, H, T, hd], rotated
 * (rotate-half, tables [R, 1, T, hd/2] with R = 1 or B) and multiplied by
 * `scale`: the queries' and keys' way into batched or per-head attention. One
 * pass where the backend has the kernel, instead of a transpose, two slices,
 * six elementwise ops and a concat. The caller disposes the result.
 */
export function rotaryHeads(x: tf.Tensor2D, rotary: RotaryTables, batch: number, heads: number, scale: number): tf.Tensor4D {
  if (hasFusedKernel(ROTARY_HEADS)) {
    const attrs: RotaryHeadsAttrs = { batch, heads, scale };
    const inputs = { x, cosines: rotary.cos, sines: rotary.sin };
    return tf.engine().runKernel(ROTARY_HEADS, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
  }
  return rotaryHeadsComposite(x, rotary, batch, heads, scale);
}

/** The same as separate tfjs ops. */
export function rotaryHeadsComposite(x: tf.Tensor2D, rotary: RotaryTables, batch: number, heads: number, scale: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [N, D] = x.shape;
    const split = tf.transpose(tf.reshape(x, [batch, N / batch, heads, D / heads]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, H, T, hd]
    const rotated = applyRotary(split, rotary);
    return scale === 1 ? rotated : (tf.mul(rotated, scale) as tf.Tensor4D);
  });
}
