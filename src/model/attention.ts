import * as tf from '@tensorflow/tfjs-core';
import { sampleMemory } from './memory-watermark.js';
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
  /**
   * Queries per block of the score matrix. Scores take B·H·T² floats at once
   * (3 GiB for one 8192-token text); in blocks of Q queries they take B·H·Q·T,
   * so memory grows linearly with length. Undefined or ≥ T: one block.
   */
  readonly queryBlock?: number;
}

/**
 * Self-attention with rotary queries and keys. x: [B·T, D] → [B·T, D].
 * The surrounding tidy guarantees nothing leaks, even on error; large
 * intermediates are still disposed as soon as they are used, which is what
 * keeps the peak at about two score matrices instead of all of them.
 */
export function selfAttention(weights: AttentionWeights, x: tf.Tensor2D, ctx: AttentionContext): tf.Tensor2D {
  return tf.tidy(() => {
    const { batch: B, length: T, heads: H } = ctx;
    const D = x.shape[1];
    const hd = D / H;
    const [q, k, v] = tf.tidy(() => {
      const heads = tf.split(tf.matMul(x, weights.qkv), 3, 1).map(
        (t) => tf.transpose(tf.reshape(t, [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D, // [B, H, T, hd]
      );
      sampleMemory();
      return heads;
    });
    // Scaling q before the product costs T·hd multiplies instead of T².
    const queries = tf.tidy(() => tf.mul(applyRotary(q, ctx.rotary), 1 / Math.sqrt(hd)) as tf.Tensor4D);
    q.dispose();
    const keys = applyRotary(k, ctx.rotary);
    k.dispose();
    const context = attend(queries, keys, v, ctx); // [B, H, T, hd]
    const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B * T, D]); // [B·T, D]
    context.dispose();
    return tf.matMul(merged, weights.out);
  });
}

/** softmax(q·kᵀ + bias)·v, one block of queries at a time. All [B, H, *, hd]. */
function attend(queries: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, ctx: AttentionContext): tf.Tensor4D {
  const T = ctx.length;
  const block = Math.min(ctx.queryBlock ?? T, T);
  const blocks: tf.Tensor4D[] = [];
  for (let start = 0; start < T; start += block) {
    const size = Math.min(block, T - start);
    blocks.push(
      tf.tidy(() => {
        const q = size === T ? queries : tf.slice(queries, [0, 0, start, 0], [-1, -1, size, -1]); // [B, H, Q, hd]
        let scores = tf.matMul(q, keys, false, true); // [B, H, Q, T]
        if (ctx.maskBias !== undefined) {
          const biased = tf.add(scores, ctx.maskBias);
          scores.dispose();
          scores = biased;
        }
        const probabilities = tf.softmax(scores);
        sampleMemory();
        scores.dispose();
        return tf.matMul(probabilities, values); // [B, H, Q, hd]
      }),
    );
  }
  if (blocks.length === 1) return blocks[0];
  const joined = tf.concat(blocks, 2); // [B, H, T, hd]
  for (const b of blocks) b.dispose();
  return joined;
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
