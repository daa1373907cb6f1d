import { describe, expect, it } from 'vitest';
import { guardWebGpuBatch, startWebGpu, webGpuAdapter } from '../src/backends/webgpu/device.js';
import { BackendError } from '../src/errors.js';
import { isOutOfMemory } from '../src/pipeline/out-of-memory.js';

/**
 * A stand-in GPU device whose error scopes report what the test sets, to drive
 * the paths a software adapter cannot reach on demand: out of memory and a
 * lost device.
 */
function fakeDevice() {
  const scopes: string[] = [];
  let loseDevice: (info: { reason: string; message: string }) => void = () => {};
  const device = {
    limits: { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 27 },
    lost: new Promise<{ reason: string; message: string }>((resolve) => (loseDevice = resolve)),
    errors: {} as Record<string, string | undefined>,
    pushErrorScope: (filter: string) => void scopes.push(filter),
    popErrorScope: async () => {
      const filter = scopes.pop()!;
      const message = device.errors[filter];
      return message === undefined ? null : { message };
    },
  };
  return { device, scopes, lose: (message: string) => loseDevice({ reason: 'unknown', message }) };
}

const adapter = {
  vendor: 'test',
  architecture: 'fake',
  description: 'a stand-in',
  software: false,
  maxBufferSize: 0,
  maxStorageBufferBindingSize: 0,
};

describe('WebGPU error scopes around each batch', () => {
  const gpu = fakeDevice();
  startWebGpu({ device: gpu.device }, adapter);

  it('records the adapter with the device\'s own limits', () => {
    expect(webGpuAdapter()).toEqual({ ...adapter, maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 27 });
  });

  it('passes a clean batch through and closes both scopes', async () => {
    expect(await guardWebGpuBatch(async () => 42)).toBe(42);
    expect(gpu.scopes).toEqual([]);
  });

  it('closes the scopes once the batch has issued its work, before its read-back settles', async () => {
    let settle: (value: number) => void = () => {};
    const batch = guardWebGpuBatch(() => new Promise<number>((resolve) => (settle = resolve)));
    expect(gpu.scopes).toEqual([]);
    settle(7);
    expect(await batch).toBe(7);
  });

  it('turns an out-of-memory scope error into an error the batch processor backs off on', async () => {
    gpu.device.errors = { 'out-of-memory': 'Failed to allocate 8589934592 bytes' };
    const error = await guardWebGpuBatch(async () => 1).catch((e: unknown) => e);
    expect(isOutOfMemory(error)).toBe(true);
    expect((error as Error).message).toMatch(/Failed to allocate/);
    expect(gpu.scopes).toEqual([]);
  });

  it('reports a validation error as a BackendError, also when the batch itself threw', async () => {
    gpu.device.errors = { validation: 'Binding size is larger than the maximum binding size' };
    const error = await guardWebGpuBatch(async () => {
      throw new Error('a read of a buffer that was never written');
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/the GPU refused the batch: Binding size/);
    expect(gpu.scopes).toEqual([]);
  });

  it('passes the batch\'s own error through when the scopes are clean', async () => {
    gpu.device.errors = {};
    await expect(guardWebGpuBatch(async () => Promise.reject(new Error('its own')))).rejects.toThrow('its own');
  });

  it('says to load the embedder again once the device is lost', async () => {
    gpu.lose('the driver was reset');
    await new Promise((resolve) => setImmediate(resolve));
    let ran = false;
    const error = await guardWebGpuBatch(async () => (ran = true)).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/the GPU device was lost \(unknown: the driver was reset\); load the embedder again/);
  });
});
