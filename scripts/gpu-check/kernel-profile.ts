import * as tf from '@tensorflow/tfjs-core';

export interface KernelTime {
  readonly kernel: string;
  readonly calls: number;
  readonly ms: number;
}

export interface KernelProfile {
  /** Per kernel, its calls and summed GPU time, the costliest first. */
  readonly kernels: KernelTime[];
  readonly kernelMs: number;
  readonly wallMs: number;
}

/**
 * Runs `work` under `tf.profile` and sums the device time of each kernel.
 * On WebGPU the times come from timestamp queries, one compute pass per
 * kernel, so the sum is a little above the unprofiled run; an adapter
 * without timestamp queries reports zeros (tfjs warns).
 */
export async function profileKernels(work: () => Promise<unknown>): Promise<KernelProfile> {
  const start = performance.now();
  const profile = await tf.profile(async () => {
    await work();
    return [];
  });
  const wallMs = performance.now() - start;
  const byKernel = new Map<string, { calls: number; ms: number }>();
  for (const { name, kernelTimeMs } of profile.kernels) {
    const entry = byKernel.get(name) ?? { calls: 0, ms: 0 };
    entry.calls += 1;
    if (typeof kernelTimeMs === 'number') entry.ms += kernelTimeMs;
    byKernel.set(name, entry);
  }
  const kernels = [...byKernel].map(([kernel, { calls, ms }]) => ({ kernel, calls, ms })).sort((a, b) => b.ms - a.ms);
  return { kernels, kernelMs: kernels.reduce((sum, k) => sum + k.ms, 0), wallMs };
}
