import type { AttentionKernel } from '../model/attention.js';
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

/** libtensorflow and plain JavaScript: batched attention, one batch at a time, half the memory up to 8 GiB. */
const BASE = {
  batchesInFlight: 1,
  attention: (): AttentionKernel => 'batched',
  defaultMemoryBudget: (machineBytes: number) => Math.min(machineBytes / 2, 8 * GiB),
};

export const POLICIES: Readonly<Record<BackendName, BackendPolicy>> = {
  'tensorflow-gpu': { ...BASE, name: 'tensorflow-gpu' },
  tensorflow: { ...BASE, name: 'tensorflow' },
  cpu: { ...BASE, name: 'cpu' },
  wasm: {
    ...BASE,
    name: 'wasm',
    // tfjs-backend-wasm sends only unbatched, untransposed products to XNNPACK: head by head, but for short batches.
    attention: (length, headDim) =>
      length !== undefined && headDim !== undefined && length * length * headDim <= SHORT_BATCH_SCORE_WORK ? 'batched' : 'per-head',
    // Its heap tops out at 4 GiB.
    defaultMemoryBudget: () => 3 * GiB,
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
