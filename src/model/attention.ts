import * as tf from '@tensorflow/tfjs-core';
import { fusedAttention, rotaryHeads } from './fused-ops.js';
import { project, type Projection } from './projection.js';
import type { RotaryTables } from './rotary.js';

export interface AttentionWeights {
  /** [D, D] each: the q, k and v rows of Wqkv and out_proj, transposed; columns head-major. */
  readonly q: Projection;
  readonly k: Projection;
  readonly v: Projection;
  readonly out: Projection;
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
  /** How the score and context products run; see {@link AttentionKernel}. */
  readonly kernel: AttentionKernel;
}

/**
 * - `batched`: batched matMuls over [B, H, T, hd], the natural form;
 * - `per-head`: head by head as plain 2-D matMuls. The wasm backend sends only
 *   unbatched, untransposed matMuls to its fast GEMM (XNNPACK) and computes
 *   batched ones with a naive loop, 15× slower;
 * - `fused`: one kernel with a blockwise online softmax that never stores the
 *   score matrix (the webgpu backend's own kernel, see `backends/webgpu`).
 */
export type AttentionKernel = 'batched' | 'per-head' | 'fused';

/**
 * Self-attention with rotary queries and keys. x: [B·T, D] → [B·T, D].
 * The surrounding tidy guarantees nothing leaks, even on error; large
 * intermediates are still disposed as soon as they are used, which keeps the
 * peak at what the memory estimator counts.
 */
export function selfAttention(weights: AttentionWeights, x: tf.Tensor2D, ctx: AttentionContext): tf.Tensor2D {
  if (ctx.kernel === 'fused') return fusedSelfAttention(weights, x, ctx);
  return tf.tidy(() => {
    const { batch: B, length: T, heads: H } = ctx;
    const D = x.shape[1];
    const hd = D / H;
    const rotated = (w: Projection, scale: number) =>
      tf.tidy(() => {
        const projected = project(x, w); // [B·T, D]
        const heads = rotaryHeads(projected, ctx.rotary, B, H, scale); // [B, H, T, hd]
        projected.dispose();
        return heads;
      });
    // Scaling q before the product costs T·hd multiplies instead of T².
    const queries = rotated(weights.q, 1 / Math.sqrt(hd));
    const keys = rotated(weights.k, 1);
    const values = tf.tidy(() => tf.transpose(tf.reshape(project(x, weights.v), [B, T, H, hd]), [0, 2, 1, 3]) as tf.Tensor4D); // [B, H, T, hd]
    const context = attend(queries, keys, values, ctx); // [B, H, T, hd]
    queries.dispose();
    keys.dispose();
    values.dispose();
    const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B * T, D]); // [B·T, D]
    context.dispose();
    return project(merged as tf.Tensor2D, weights.out);
  });
}

function attend(queries: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, ctx: AttentionContext): tf.Tensor4D {
  switch (ctx.kernel) {
    case 'batched':
      return attendBatched(queries, keys, values, ctx);
    case 'per-head':
      return attendPerHead(queries, keys, values, ctx);
    case 'fused':
      throw new Error('fused attention runs through fusedSelfAttention');
    default: {
      const unknown: never = ctx.kernel;
      throw new Error(`unknown attention kernel ${String(unknown)}`);
    }
  }
}

/**
 * The same with the backend's fused kernel, which rotates and attends in the
 * projections' own [B, T, H, hd] layout: three products, one kernel, one
 * product, and no transposed or rotated copies in between.
 */
function fusedSelfAttention(weights: AttentionWeights, x: tf.Tensor2D, ctx: AttentionContext): tf.Tensor2D {
  return tf.tidy(() => {
    const { batch: B, length: T, heads: H } = ctx;
    const D = x.shape[1];
    const hd = D / H;
    const heads = (w: Projection) => tf.reshape(project(x, w), [B, T, H, hd]) as tf.Tensor4D; // [B, T, H, hd]
    const [queries, keys, values] = [weights.q, weights.k, weights.v].map(heads);
    const rows = ctx.rotary.cos.shape[0];
    const table = (t: tf.Tensor4D) => tf.reshape(t, [rows, T, hd / 2]) as tf.Tensor3D; // [R, T, hd/2]
    const context = fusedAttention(queries, keys, values, { cos: table(ctx.rotary.cos), sin: table(ctx.rotary.sin) }, ctx.maskBias, 1 / Math.sqrt(hd));
    queries.dispose();
    keys.dispose();
    values.dispose();
    return project(tf.reshape(context, [B * T, D]) as tf.Tensor2D, weights.out); // [B·T, D]
  });
}

/** The query blocks [start, size) covering 0..T-1. */
function queryBlocks(ctx: AttentionContext): [number, number][] {
  const T = ctx.length;
  const block = Math.min(ctx.queryBlock ?? T, T);
  const blocks: [number, number][] = [];
  for (let start = 0; start < T; start += block) blocks.push([start, Math.min(block, T - start)]);
  return blocks;
}

/** softmax(q·kᵀ + bias)·v with batched matMuls. All [B, H, *, hd]. */
function attendBatched(queries: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, ctx: AttentionContext): tf.Tensor4D {
  const blocks = queryBlocks(ctx).map(([start, size]) =>
    tf.tidy(() => {
      const q = size === ctx.length ? queries : tf.slice(queries, [0, 0, start, 0], [-1, -1, size, -1]); // [B, H, Q, hd]
      const probabilities = softmaxScores(tf.matMul(q, keys, false, true), ctx.maskBias); // [B, H, Q, T]
      return tf.matMul(probabilities, values); // [B, H, Q, hd]
    }),
  );
  return joinBlocks(blocks, 2) as tf.Tensor4D;
}

/** The same, one (sequence, head) at a time with 2-D matMuls. */
function attendPerHead(queries: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, ctx: AttentionContext): tf.Tensor4D {
  const { batch: B, heads: H, length: T } = ctx;
  const hd = queries.shape[3];
  return tf.tidy((): tf.Tensor4D => {
    // Slices, not unstack: the wasm backend's Unpack copies its whole input once per part.
    const q = parts(tf.reshape(queries, [B * H, T, hd])); // B·H × [T, hd]
    const kT = parts(tf.transpose(tf.reshape(keys, [B * H, T, hd]), [0, 2, 1])); // B·H × [hd, T]
    const v = parts(tf.reshape(values, [B * H, T, hd])); // B·H × [T, hd]
    const biasRows = ctx.maskBias === undefined ? undefined : parts(tf.reshape(ctx.maskBias, [B, 1, T])); // B × [1, T]
    const heads = q.map((qh, i) => {
      const bias = biasRows?.[Math.floor(i / H)];
      const blocks = queryBlocks(ctx).map(([start, size]) =>
        tf.tidy(() => {
          const rows = size === T ? qh : tf.slice(qh, [start, 0], [size, hd]); // [Q, hd]
          return tf.matMul(softmaxScores(tf.matMul(rows, kT[i]), bias), v[i]); // [Q, hd]
        }),
      );
      qh.dispose();
      kT[i].dispose();
      v[i].dispose();
      return joinBlocks(blocks, 0);
    });
    return tf.reshape(tf.stack(heads), [B, H, T, hd]) as tf.Tensor4D;
  });
}

/** [n, a, b] → n tensors [a, b]; frees the input. */
function parts(x: tf.Tensor3D): tf.Tensor2D[] {
  const [n, a, b] = x.shape;
  const result = Array.from({ length: n }, (_, i) => tf.reshape(tf.slice(x, [i, 0, 0], [1, a, b]), [a, b]) as tf.Tensor2D);
  x.dispose();
  return result;
}

/** softmax(scores + bias), freeing each intermediate as soon as the next exists. */
function softmaxScores<R extends tf.Rank>(scores: tf.Tensor<R>, bias: tf.Tensor | undefined): tf.Tensor<R> {
  let biased = scores;
  if (bias !== undefined) {
    biased = tf.add(scores, bias);
    scores.dispose();
  }
  const probabilities = tf.softmax(biased);
  biased.dispose();
  return probabilities;
}

function joinBlocks<T extends tf.Tensor>(blocks: T[], axis: number): T {
  if (blocks.length === 1) return blocks[0];
  const joined = tf.concat(blocks, axis) as T;
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
