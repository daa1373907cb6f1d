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
}

/**
 * Predicts the peak tensor memory of one forward pass over B sequences padded
 * to length L. Layers run one at a time, so only one layer's activations count.
 * The terms follow the order of allocation in the transformer code (N = B·L):
 * - always alive: the layer input and the post-attention state, 2·N·D;
 * - projecting q, k, v: the fused output, its three slices and their head-major copies, 9·N·D;
 * - scores: q, k, v (3·N·D) plus two score blocks, B·H·Q·L each (raw and
 *   masked, or masked and softmax), with Q = `queryBlock` or L;
 * - SwiGLU: the [N, 2F] projection and its two halves, 4·N·F;
 * - rotary tables: the cached table (at least 512 positions) and this batch's
 *   window, per row when NTK scaling gives rows their own.
 */
export function estimateMemory(
  config: NomicBertConfig,
  batch: number,
  length: number,
  queryBlock: number = length,
  ffnWidth: number = config.ffnWidth,
): MemoryEstimate {
  const N = batch * length;
  const D = config.n_embd;
  const scores = 2 * batch * config.n_head * Math.min(queryBlock, length) * length;
  const phases = [9 * N * D, 3 * N * D + scores, 4 * N * ffnWidth];
  const halfHead = config.headDim / 2;
  const rotaryRows = config.rotary_scaling_factor !== null && length > config.max_trained_positions ? batch : 1;
  const rotary = 2 * halfHead * (Math.max(512, 2 ** Math.ceil(Math.log2(length))) + rotaryRows * length);
  const activations = 2 * N * D + Math.max(...phases) + rotary;
  const weightBytes = parameterCount(weightTable(config, 'runtime', ffnWidth)) * FLOAT_BYTES;
  return {
    weightBytes,
    activationBytes: activations * FLOAT_BYTES,
    attentionBytes: scores * FLOAT_BYTES,
    totalBytes: weightBytes + activations * FLOAT_BYTES,
  };
}

/**
 * The largest query block (a power of two, at least 64) whose forward pass fits
 * in `budgetBytes`, or L when the whole score matrix fits. Returns the smallest
 * block when nothing fits: the batch processor then backs off on failure.
 */
export function queryBlockFor(config: NomicBertConfig, batch: number, length: number, budgetBytes: number): number {
  if (estimateMemory(config, batch, length).totalBytes <= budgetBytes) return length;
  let block = 2 ** Math.floor(Math.log2(length));
  while (block > 64 && estimateMemory(config, batch, length, block).totalBytes > budgetBytes) block /= 2;
  return Math.min(block, length);
}
