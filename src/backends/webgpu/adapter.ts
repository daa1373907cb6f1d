/**
 * Finding a WebGPU adapter, in a browser or in Node (Dawn, through the npm
 * package `webgpu`), and telling a real GPU from a software one.
 */

/** The parts of a GPUAdapter this package reads (no DOM types needed). */
export interface AdapterLike {
  readonly info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  readonly isFallbackAdapter?: boolean;
  readonly limits: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number };
}

interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<AdapterLike | null>;
}

/** What `embedder.device` and `nomic-embed info` report about a WebGPU adapter. */
export interface GpuAdapterReport {
  readonly vendor: string;
  readonly architecture: string;
  readonly description: string;
  /** A CPU implementation (llvmpipe, SwiftShader, WARP) or the browser's fallback adapter. */
  readonly software: boolean;
  /** The largest buffer the device can allocate, in bytes. */
  readonly maxBufferSize: number;
  /** The largest buffer one shader may bind: the most bytes any single tensor may hold. */
  readonly maxStorageBufferBindingSize: number;
}

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render|\bwarp\b|software/i;

/** Reads an adapter's identity and the limits that bound tensor sizes. */
export function describeAdapter(adapter: AdapterLike): GpuAdapterReport {
  const info = adapter.info ?? {};
  const description = [info.description, info.device].filter((s) => s !== undefined && s !== '').join(' ') || '(none given)';
  const vendor = info.vendor || '(unknown)';
  const architecture = info.architecture || '(unknown)';
  const software =
    info.isFallbackAdapter === true ||
    adapter.isFallbackAdapter === true ||
    architecture === 'software' ||
    SOFTWARE_NAMES.test(`${vendor} ${description}`);
  return {
    vendor,
    architecture,
    description,
    software,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}

/** `navigator.gpu`, made from Dawn's Node bindings where the runtime has none. Throws with what to install. */
export async function webGpu(): Promise<GpuLike> {
  const existing = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (existing !== undefined) return existing;
  let dawn: { create(flags: string[]): GpuLike; globals: Record<string, unknown> };
  try {
    // A variable specifier keeps TypeScript from requiring the optional package's types.
    const specifier: string = 'webgpu';
    dawn = await import(specifier);
  } catch (error) {
    throw new Error(`the webgpu package is not usable (${(error as Error).message.split('\n')[0]}); install it with \`npm install webgpu @tensorflow/tfjs-backend-webgpu\``);
  }
  // tfjs-backend-webgpu registers itself only where navigator.gpu exists when it is imported.
  Object.assign(globalThis, dawn.globals);
  const holder = globalThis as { navigator?: { gpu?: GpuLike } };
  if (holder.navigator === undefined) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  const gpu = dawn.create([]);
  Object.defineProperty(holder.navigator!, 'gpu', { value: gpu, configurable: true, writable: true });
  return gpu;
}

/** The adapter tfjs-backend-webgpu will take (it asks for the high-performance one), or a reason there is none. */
export async function findAdapter(): Promise<{ adapter: AdapterLike } | { failure: string }> {
  let gpu: GpuLike;
  try {
    gpu = await webGpu();
  } catch (error) {
    return { failure: (error as Error).message };
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (adapter === null) {
    return {
      failure:
        'no WebGPU adapter: no GPU driver with Vulkan, Metal or D3D12 was found ' +
        '(on Linux without a GPU, scripts/setup-vulkan.sh installs a software Vulkan device)',
    };
  }
  return { adapter };
}
