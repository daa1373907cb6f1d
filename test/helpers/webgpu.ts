import { describe } from 'vitest';
import { describeAdapter, findAdapter, type GpuAdapterReport } from '../../src/backends/webgpu/adapter.js';

/**
 * Whether this machine has a WebGPU adapter (a real GPU, or Mesa's llvmpipe
 * after scripts/setup-vulkan.sh). Under CI=true a missing adapter fails the
 * WebGPU tests; elsewhere they are skipped with a message naming the script.
 */
export async function webGpuSuite(): Promise<{ describe: typeof describe; adapter: GpuAdapterReport | undefined }> {
  const found = await findAdapter();
  if ('adapter' in found) return { describe, adapter: describeAdapter(found.adapter) };
  const message = `no WebGPU adapter (${found.failure}); run scripts/setup-vulkan.sh for a software Vulkan device`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`skipping the WebGPU tests: ${message}`);
  return { describe: describe.skip as unknown as typeof describe, adapter: undefined };
}
