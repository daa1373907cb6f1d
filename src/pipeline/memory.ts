import type { AttentionKernel } from '../model/attention.js';
import type { NomicBertConfig } from '../weights/config.js';
import { parameterCount, weightTable } from '../weights/weight-table.js';

const FLOAT_BYTES = 4;

export interface MemoryEstimate {
  /** Weights on the backend, float32. */
  readonly weightBytes: number;
  /** The largest set of activations alive at once while one layer runs. */
  readonly activationBytes: number;
  /** Of which the attention score blocks. */
  readonly attentionBytes: number;
  readonly totalBytes: number;
  /**
   * The largest single tensor: the word embeddings, a SwiGLU projection
   * [N, F], or a batched score block. WebGPU caps each buffer at the
   * adapter's `maxStorageBufferBindingSize`.
   */
  readonly largestTensorBytes: number;
}

export interface EstimateOptions {
  /** Queries per attention block. @default the whole length */
  readonly queryBlock?: number;
  /** The attention kernel the backend runs. @default 'batched', the most memory-hungry */
  readonly attention?: AttentionKernel;
  /** SwiGLU width, when the checkpoint's differs from the config's. */
  readonly ffnWidth?: number;
}

/**
 * Predicts the peak tensor memory of one forward pass over B sequences padded
 * to length L. Layers run one at a time, so only one layer's activations count.
 * The terms follow the order of allocation in the transformer code (N = B·L,
 * Q the query block), and were checked against `tf.profile`'s peak:
 * - head-by-head attention (wasm): the layer input, q, k, v and the per-head
 *   copies the products read, 11·N·D, plus two Q·L score blocks of one head;
 * - batched attention: the layer input and the larger of the projection and
 *   rotary phase (7·N·D) and q, k, v with two B·H·Q·L score blocks (and the
 *   finished blocks' outputs when there are several);
 * - fused attention (webgpu): the layer input, the [N, 3D] QKV projection
 *   the kernel reads in place and its [N, D] output, 5·N·D;
 * - SwiGLU: the layer input, the post-attention state and three [N, F] tensors;
 * - rotary tables: the cached table (at least 512 positions) and this batch's
 *   window, per row when NTK scaling gives rows their own.
 */
export function estimateMemory(
  config: NomicBertConfig,
  batch: number,
  length: number,
  options: EstimateOptions = {},
): MemoryEstimate {
  const { queryBlock = length, attention: kernel = 'batched', ffnWidth = config.ffnWidth } = options;
  const N = batch * length;
  const D = config.n_embd;
  const Q = Math.min(queryBlock, length);
  const scores = kernel === 'fused' ? 0 : 2 * Q * length * (kernel === 'per-head' ? 1 : batch * config.n_head);
  // Batched query blocks accumulate their [B, H, Q, hd] outputs until joined: up to N·D more.
  const blockOutputs = Q < length && kernel === 'batched' ? N * D : 0;
  const attention =
    kernel === 'fused'
      ? // The layer input, q, k, v and the kernel's [N, D] output: nothing of size T², no rotated or transposed copies.
        5 * N * D
      : kernel === 'per-head'
        ? 11 * N * D + scores
        : N * D + Math.max(7 * N * D, 3 * N * D + blockOutputs + scores);
  const mlp = 2 * N * D + 3 * N * ffnWidth;
  const halfHead = config.headDim / 2;
  const rotaryRows = config.rotary_scaling_factor !== null && length > config.max_trained_positions ? batch : 1;
  const rotary = 2 * halfHead * (Math.max(512, 2 ** Math.ceil(Math.log2(length))) + rotaryRows * length);
  const activations = Math.max(attention, mlp) + rotary;
  const weightBytes = parameterCount(weightTable(config, 'runtime', ffnWidth)) * FLOAT_BYTES;
  const largest = Math.max(config.paddedVocabSize * D, N * ffnWidth, scores / 2);
  return {
    weightBytes,
    activationBytes: activations * FLOAT_BYTES,
    attentionBytes: scores * FLOAT_BYTES,
    totalBytes: weightBytes + activations * FLOAT_BYTES,
    largestTensorBytes: largest * FLOAT_BYTES,
  };
}

/**
 * The largest query block (a power of two, at least 64) whose forward pass fits
 * in `budgetBytes`, or L when the whole score matrix fits. Returns the smallest
 * block when nothing fits: the batch processor then backs off on failure.
 */
export function queryBlockFor(
  config: NomicBertConfig,
  batch: number,
  length: number,
  budgetBytes: number,
  attention: AttentionKernel,
): number {
  // The fused kernel's memory does not depend on a query block.
  if (attention === 'fused') return length;
  const fits = (queryBlock: number) => estimateMemory(config, batch, length, { queryBlock, attention }).totalBytes <= budgetBytes;
  if (fits(length)) return length;
  let block = 2 ** Math.floor(Math.log2(length));
  while (block > 64 && !fits(block)) block /= 2;
  return Math.min(block, length);
}
