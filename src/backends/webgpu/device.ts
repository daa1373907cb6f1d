import { BackendError } from '../../errors.js';
import type { GpuAdapterReport } from './adapter.js';
import { GUARANTEED_WORKGROUP_BYTES } from './attention-program.js';
import { registerWebGpuKernels } from './kernels.js';

/** The parts of a GPUDevice this package uses. */
interface DeviceLike {
  readonly limits: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number; readonly maxComputeWorkgroupStorageSize: number };
  readonly lost: Promise<{ reason: string; message: string }>;
  pushErrorScope(filter: 'out-of-memory' | 'validation' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
}

interface WebGpuBackendLike {
  readonly device: DeviceLike;
}

let current: { device: DeviceLike; report: GpuAdapterReport; lost: string | undefined } | undefined;

/**
 * Called once the webgpu backend is active: registers the fused kernels,
 * records the adapter (tfjs keeps only its vendor and architecture) and the
 * device's limits, and watches for the device's loss.
 */
export function startWebGpu(backend: unknown, adapter: GpuAdapterReport): void {
  const { device } = backend as WebGpuBackendLike;
  if (current?.device === device) return;
  registerWebGpuKernels();
  // The device's limits are what tfjs asked for: the adapter's own.
  const { maxBufferSize, maxStorageBufferBindingSize } = device.limits;
  const state = {
    device,
    report: { ...adapter, maxBufferSize, maxStorageBufferBindingSize },
    lost: undefined as string | undefined,
  };
  current = state;
  void device.lost.then((info) => (state.lost = `${info.reason}: ${info.message}`));
}

/** The workgroup memory a kernel may use on the active device (tfjs asks for the adapter's whole limit). */
export function webGpuWorkgroupBytes(): number {
  return current?.device.limits.maxComputeWorkgroupStorageSize ?? GUARANTEED_WORKGROUP_BYTES;
}

/** The adapter the webgpu backend runs on, once it is active. */
export function webGpuAdapter(): GpuAdapterReport | undefined {
  return current?.report;
}

/**
 * Runs one batch inside WebGPU error scopes. WebGPU reports failed
 * allocations through error scopes, not exceptions: an out-of-memory error
 * becomes an exception the batch processor backs off on, a validation error
 * (a buffer above the device's limits) a {@link BackendError}, and a lost
 * device an error that says to load the embedder again.
 */
export async function guardWebGpuBatch<T>(run: () => Promise<T>): Promise<T> {
  const state = current;
  if (state === undefined) return run();
  if (state.lost !== undefined) throw lostError(state.lost);
  state.device.pushErrorScope('out-of-memory');
  state.device.pushErrorScope('validation');
  let result: T | undefined;
  let failure: unknown;
  try {
    result = await run();
  } catch (error) {
    failure = error;
  }
  const validation = await state.device.popErrorScope();
  const outOfMemory = await state.device.popErrorScope();
  if (state.lost !== undefined) throw lostError(state.lost);
  if (outOfMemory !== null) throw new Error(`WebGPU out of memory: ${outOfMemory.message}`);
  if (validation !== null) throw new BackendError('webgpu', `the GPU refused the batch: ${validation.message}`);
  if (failure !== undefined) throw failure;
  return result as T;
}

function lostError(reason: string): BackendError {
  return new BackendError('webgpu', `the GPU device was lost (${reason}); load the embedder again to start a new one`);
}
