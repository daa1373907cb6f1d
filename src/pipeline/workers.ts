import type { MemoryEstimate } from './memory.js';

export interface WorkerSizing {
  /** Whether one backend instance computes on one core only (wasm without its threaded build). */
  readonly oneCorePerInstance: boolean;
  readonly cores: number;
  /** Memory free for the embedder: the machine's available memory, or the container's limit if lower. */
  readonly availableBytes: number;
  /** The memory estimate of one typical batch (weights included). */
  readonly batch: MemoryEstimate;
  /** How many copies of the weights a worker holds (wasm keeps some packed for XNNPACK). @default 1 */
  readonly weightCopies?: number;
}

/** Share of the available memory the workers may plan to take; the rest is left to the process and the system. */
const MEMORY_SHARE = 0.75;

/**
 * How many worker threads `loadEmbedder` starts when none is asked for. Only
 * a backend that computes on one thread per instance needs several (wasm
 * where its threaded build cannot start); libtensorflow, threaded wasm and
 * the GPU backends use every core from one thread. Each
 * wasm worker holds its weights (`weightCopies` times) and a batch's
 * activations, so the count is the lower of the cores and what the memory
 * holds, and never below one.
 */
export function defaultWorkerCount({ oneCorePerInstance, cores, availableBytes, batch, weightCopies = 1 }: WorkerSizing): number {
  if (!oneCorePerInstance) return 1;
  const perWorker = weightCopies * batch.weightBytes + batch.activationBytes;
  return Math.max(1, Math.min(cores, Math.floor((availableBytes * MEMORY_SHARE) / perWorker)));
}

/** Memory this process may still use: the system's available memory, capped by a container's limit. */
export function availableMemory(free: number, constrained: number | undefined): number {
  return constrained !== undefined && constrained > 0 ? Math.min(free, constrained) : free;
}
