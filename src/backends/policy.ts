import type { AttentionKernel } from '../model/attention.js';
import { FUSED_ATTENTION, hasFusedKernel } from '../model/fused-ops.js';
import { simdAttentionTakes } from './q8/simd-layers.js';
import type { BackendName } from './select.js';

/**
 * What a backend decides about batches, apart from how it starts: the part
 * every runtime shares (Node's backends in `backend.ts`, a page's in
 * `browser/`), so a batch runs the same way wherever the library does.
 */
export interface BackendPolicy {
  readonly name: BackendName;
  /**
   * Batches to keep in flight on one model in this thread. On a GPU, two: the
   * host tokenizes, encodes and reads back one while the device runs the
   * other. Memory does not grow: tfjs frees a batch's intermediates once its
   * forward pass is encoded, the next batch reuses those buffers, and the GPU
   * runs submissions in order.
   */
  readonly batchesInFlight: number;
  /** The attention kernel for a batch padded to `length`, with heads of `headDim`; without them, its usual one. */
  attention(length?: number, headDim?: number): AttentionKernel;
  /** `memoryBudgetBytes` when a call gives none. */
  defaultMemoryBudget(machineBytes: number): number;
  /** `maxBatchTokens` when a call gives none. */
  readonly defaultMaxBatchTokens: number;
}

const GiB = 1024 ** 3;

/**
 * Where head-by-head attention stops paying on wasm: the work of one
 * (sequence, head)'s score matrix, T²·hd. Head by head costs about ten tfjs
 * ops per sequence and head (40–70 µs each pair, whatever its size); the
 * batched products' plain loop costs 2.5–5 ns per T²·hd. Measured on one
 * wasm thread (B 1–32; H 4, hd 16 and H 12, hd 64), batched attention is
 * 1.2–10× faster up to T²·hd = 16384 (T = 16 at hd 64, T = 32 at hd 16) and
 * 2–5× slower from 4× that. So a batch of short queries, such as concurrent
 * single-query calls gathered by the queue, does not pay per sequence.
 */
export const SHORT_BATCH_SCORE_WORK = 16384;

/**
 * The longest batch our wasm attention kernel takes. Its cost grows with
 * T²·hd per (sequence, head); head by head, XNNPACK's products are faster
 * per score but cost a fixed 40–60 µs per pair in tfjs ops. Measured on one
 * thread, the attention alone, ours against head by head at hd 64 (B·T =
 * 1024 to 2048): 7–12× up to T = 32, 2.5× at 64, 1.5× at 128, 1.14× at
 * 256, 0.84× at 512 and 0.57× at 2048; at hd 16, 3.3× at T = 128 and 1.2×
 * at 256.
 */
export const FUSED_MAX_LENGTH = 256;

/**
 * Our module's rotary attention kernel where it is registered (see
 * `backends/q8/simd-layers.ts`) and the scores are small enough for it to
 * win; tfjs-backend-wasm sends only unbatched, untransposed products to
 * XNNPACK, so beyond that head by head (but for short batches where our
 * kernel is missing: batched products).
 */
function wasmAttention(length?: number, headDim?: number): AttentionKernel {
  if (length === undefined || headDim === undefined) return 'per-head';
  if (length <= FUSED_MAX_LENGTH && simdAttentionTakes(headDim) && hasFusedKernel(FUSED_ATTENTION)) return 'fused';
  return length * length * headDim <= SHORT_BATCH_SCORE_WORK ? 'batched' : 'per-head';
}

/**
 * The wasm heap never shrinks: after a call it keeps the largest batch's
 * activations for the life of the process. Batches of 2048 tokens embed as
 * fast as batches of 8192 there (the products are as efficient at 2048 rows)
 * and leave a process about 0.4 GiB smaller; see the README's performance
 * section for the figures.
 */
export const WASM_MAX_BATCH_TOKENS = 2048;

/** libtensorflow and plain JavaScript: batched attention, one batch at a time, half the memory up to 8 GiB. */
const BASE = {
  batchesInFlight: 1,
  attention: (): AttentionKernel => 'batched',
  defaultMemoryBudget: (machineBytes: number) => Math.min(machineBytes / 2, 8 * GiB),
  defaultMaxBatchTokens: 8192,
};

export const POLICIES: Readonly<Record<BackendName, BackendPolicy>> = {
  'tensorflow-gpu': { ...BASE, name: 'tensorflow-gpu' },
  tensorflow: { ...BASE, name: 'tensorflow' },
  cpu: { ...BASE, name: 'cpu' },
  wasm: {
    ...BASE,
    name: 'wasm',
    attention: wasmAttention,
    // Its heap tops out at 4 GiB.
    defaultMemoryBudget: () => 3 * GiB,
    defaultMaxBatchTokens: WASM_MAX_BATCH_TOKENS,
  },
  webgpu: {
    ...BASE,
    name: 'webgpu',
    batchesInFlight: 2,
    attention: () => 'fused',
    // WebGPU reports no free memory: 4 GiB suits any discrete GPU and leaves integrated ones room.
    defaultMemoryBudget: () => 4 * GiB,
  },
};
