import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { AUTO_ORDER, gpuFailure, selectBackend, type BackendName } from '../src/backends/select.js';
import { describeAdapter, findAdapter } from '../src/backends/webgpu/adapter.js';
import { mayHaveGpu } from '../src/backends/webgpu/gpu-devices.js';
import { webGpuAdapter } from '../src/backends/webgpu/device.js';
import { BackendError } from '../src/errors.js';

/**
 * An activator that succeeds only for the given backends, recording what was
 * tried. `softwareGpu`: WebGPU has only a software adapter, so it starts when
 * asked for by name but not when `auto` is picking.
 */
function fakeMachine(working: BackendName[], { softwareGpu = false } = {}) {
  const tried: BackendName[] = [];
  const activate = async (name: BackendName, picking: boolean) => {
    tried.push(name);
    if (name === 'webgpu' && softwareGpu) return picking ? 'only a software adapter' : undefined;
    return working.includes(name) ? undefined : `${name} missing`;
  };
  return { tried, activate };
}

describe('backend selection', () => {
  it('auto tries CUDA, then WebGPU, then libtensorflow on CPU, then wasm, then cpu', async () => {
    expect(AUTO_ORDER).toEqual(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']);
    const cudaMachine = fakeMachine(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']);
    expect(await selectBackend('auto', cudaMachine.activate)).toBe('tensorflow-gpu');
    expect(cudaMachine.tried).toEqual(['tensorflow-gpu']);
    const gpuMachine = fakeMachine(['webgpu', 'wasm', 'cpu']);
    expect(await selectBackend('auto', gpuMachine.activate)).toBe('webgpu');
    const cpuMachine = fakeMachine(['tensorflow', 'wasm', 'cpu']);
    expect(await selectBackend('auto', cpuMachine.activate)).toBe('tensorflow');
    const plainMachine = fakeMachine(['wasm', 'cpu']);
    expect(await selectBackend('auto', plainMachine.activate)).toBe('wasm');
    expect(plainMachine.tried).toEqual(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm']);
  });

  it('auto passes over a software GPU adapter, which serves when asked for by name', async () => {
    const machine = fakeMachine(['wasm', 'cpu'], { softwareGpu: true });
    expect(await selectBackend('auto', machine.activate)).toBe('wasm');
    expect(await selectBackend('webgpu', machine.activate)).toBe('webgpu');
  });

  it('reports every failure when nothing works', async () => {
    await expect(selectBackend('auto', fakeMachine([]).activate)).rejects.toThrow(/tensorflow-gpu missing[\s\S]*cpu missing/);
  });

  it('an explicit choice is not replaced by another', async () => {
    const machine = fakeMachine(['wasm']);
    await expect(selectBackend('cpu', machine.activate)).rejects.toBeInstanceOf(BackendError);
    expect(machine.tried).toEqual(['cpu']);
  });

  it('counts tfjs-node-gpu as the CUDA backend only when it reports a GPU device', () => {
    expect(gpuFailure({ isUsingGpuDevice: true })).toBeUndefined();
    expect(gpuFailure({ isUsingGpuDevice: false })).toMatch(/no usable CUDA device.*CUDA 11\.2 and cuDNN 8\.1/);
    expect(gpuFailure(undefined)).toMatch(/no usable CUDA device/);
  });

  it('rejects an unknown backend name', async () => {
    await expect(selectBackend('metal' as BackendName)).rejects.toThrow(/unknown backend; choose one of auto, tensorflow-gpu, webgpu/);
  });

  // tfjs-node is an optional peer whose install step needs a download: each branch asserts what holds here.
  const installed = (pkg: string) =>
    import(/* @vite-ignore */ pkg).then(
      () => true,
      () => false,
    );

  it('on this machine: a missing libtensorflow package is an error that says what to install, a present one starts', async () => {
    if (await installed('@tensorflow/tfjs-node')) {
      expect(await selectBackend('tensorflow')).toBe('tensorflow');
    } else {
      await expect(selectBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node/);
    }
    if (!(await installed('@tensorflow/tfjs-node-gpu'))) {
      await expect(selectBackend('tensorflow-gpu')).rejects.toThrow(/CUDA 11\.2 and cuDNN 8\.1/);
    }
  });

  it('on this machine: auto activates the fastest available backend', async () => {
    const chosen = await selectBackend('auto');
    expect(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm']).toContain(chosen);
    expect(tf.getBackend()).toBe(chosen.startsWith('tensorflow') ? 'tensorflow' : chosen);
    // Where auto takes WebGPU, it is a real GPU: llvmpipe (these machines' only adapter) is never taken.
    if (chosen === 'webgpu') expect(webGpuAdapter()?.software).toBe(false);
    const found = await findAdapter();
    if ('adapter' in found && describeAdapter(found.adapter).software) expect(chosen).not.toBe('webgpu');
  });
});

describe('looking for a GPU before starting Dawn', () => {
  const machine = (files: Record<string, string[]>) => (dir: string) => files[dir] ?? [];

  it('on Linux, finds render nodes, NVIDIA devices and WSL\'s GPU, and nothing else', () => {
    expect(mayHaveGpu('linux', machine({ '/dev/dri': ['card0', 'renderD128'] }))).toBe(true);
    expect(mayHaveGpu('linux', machine({ '/dev': ['null', 'nvidia0', 'nvidiactl'] }))).toBe(true);
    expect(mayHaveGpu('linux', machine({ '/dev': ['dxg'] }))).toBe(true);
    expect(mayHaveGpu('linux', machine({ '/dev': ['null', 'nvidiactl', 'tty'], '/dev/dri': ['card0'] }))).toBe(false);
    expect(mayHaveGpu('linux', machine({}))).toBe(false);
  });

  it('elsewhere leaves the answer to the adapter', () => {
    expect(mayHaveGpu('darwin', machine({}))).toBe(true);
    expect(mayHaveGpu('win32', machine({}))).toBe(true);
  });
});
