import { BackendError } from '../../errors.js';
import type { GpuAdapterReport } from './adapter.js';
import { registerWebGpuKernels } from './kernels.js';

/** The parts of a GPUDevice this package uses. */
interface DeviceLike {
  readonly limits: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number };
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
 *
 * `run` must issue all its GPU work before its first `await`, as a batch
 * does: tfjs encodes the forward pass synchronously, and a read-back submits
 * its commands before it waits. The scopes close as soon as `run` returns its
 * promise, so the next batch can be encoded while the GPU runs this one
 * without its commands landing in this batch's scopes (scopes are a stack).
 */
export async function guardWebGpuBatch<T>(run: () => Promise<T>): Promise<T> {
  const state = current;
  if (state === undefined) return run();
  if (state.lost !== undefined) throw lostError(state.lost);
  state.device.pushErrorScope('out-of-memory');
  state.device.pushErrorScope('validation');
  let pending: Promise<T>;
  try {
    pending = run();
  } catch (error) {
    pending = Promise.reject(error);
  }
  const validationScope = state.device.popErrorScope();
  const outOfMemoryScope = state.device.popErrorScope();
  const [outcome, validation, outOfMemory] = await Promise.all([
    pending.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    validationScope,
    outOfMemoryScope,
  ]);
  if (state.lost !== undefined) throw lostError(state.lost);
  if (outOfMemory !== null) throw new Error(`WebGPU out of memory: ${outOfMemory.message}`);
  if (validation !== null) throw new BackendError('webgpu', `the GPU refused the batch: ${validation.message}`);
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

function lostError(reason: string): BackendError {
  return new BackendError('webgpu', `the GPU device was lost (${reason}); load the embedder again to start a new one`);
}
