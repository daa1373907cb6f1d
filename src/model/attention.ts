import * as tf from '@tensorflow/tfjs-core';
import { applyRotary, type RotaryTables } from './rotary.js';

export interface AttentionWeights {
  /** [D, 3D]: Wqkv transposed; output columns are q, k, v, each head-major. */
  readonly qkv: tf.Tensor2D;
  /** [D, D]: out_proj transposed. */
  readonly out: tf.Tensor2D;
}

/** What every layer of one forward pass shares: built once per batch. */
export interface AttentionContext {
  readonly batch: number;
  readonly length: number;
  readonly heads: number;
  readonly rotary: RotaryTables;
  /** [B, 1, 1, T] additive bias, large negative on padded keys; undefined when nothing is padded. */
  readonly maskBias: tf.Tensor4D | undefined;
}

/** Self-attention with rotary queries and keys. x: [B·T, D] → [B·T, D]. */
export function selfAttention(weights: AttentionWeights, x: tf.Tensor2D, ctx: AttentionContext): tf.Tensor2D {
  return tf.tidy(() => {
    const { batch: B, length: T, heads: H } = ctx;
    const D = x.shape[1];
    const hd = D / H;
    const toHeads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, H, T, hd]
    const [q, k, v] = tf.split(tf.matMul(x, weights.qkv), 3, 1).map(toHeads); // 3 × [B, H, T, hd]
    // Scaling q before the product costs T·hd multiplies instead of T².
    const queries = tf.mul(applyRotary(q, ctx.rotary), 1 / Math.sqrt(hd));
    const keys = applyRotary(k, ctx.rotary);
    let scores = tf.matMul(queries, keys, false, true); // [B, H, T, T]
    if (ctx.maskBias !== undefined) scores = tf.add(scores, ctx.maskBias);
    const context = tf.matMul(tf.softmax(scores), v); // [B, H, T, hd]
    const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B * T, D]); // [B·T, D]
    return tf.matMul(merged, weights.out);
  });
}

/**
 * Padded keys get a bias that makes their softmax weight exactly zero. The
 * reference adds the most negative float; any value that underflows exp() is
 * equivalent, and a finite one keeps an all-padded row from producing NaN.
 */
export const MASKED_SCORE = -1e9;

/** [B, T] attention mask (1 real, 0 pad) → [B, 1, 1, T] additive bias. Caller disposes. */
export function maskBias(attentionMask: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, T] = attentionMask.shape;
    const padded = tf.sub(1, tf.cast(attentionMask, 'float32'));
    return tf.reshape(tf.mul(padded, MASKED_SCORE), [B, 1, 1, T]);
  });
}
