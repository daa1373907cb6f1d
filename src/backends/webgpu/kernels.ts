import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program.js';
import { FUSED_ATTENTION, RESIDUAL_LAYER_NORM, SWIGLU, type FusedAttentionAttrs, type ResidualLayerNormAttrs } from '../../model/fused-ops.js';
import { FusedAttentionProgram, keyTileFor, QUERY_TILE } from './attention-program.js';
import { ResidualLayerNormProgram } from './layer-norm-program.js';
import { SwigluProgram } from './swiglu-program.js';

/** The parts of tfjs-backend-webgpu's backend these kernels use. */
interface WebGpuBackendLike {
  /** tfjs asks for the adapter's own limits, so these are the hardware's. */
  readonly device: { readonly limits: { readonly maxComputeWorkgroupStorageSize: number } };
  runWebGPUProgram(
    program: WebGPUProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: { type: string; data: number[] }[],
  ): tf.TensorInfo;
}

type KernelArgs = { inputs: Record<string, tf.TensorInfo>; backend: WebGpuBackendLike; attrs: Record<string, unknown> };

function sameShape(what: string, a: tf.TensorInfo, b: tf.TensorInfo): void {
  if (a.shape.join() !== b.shape.join()) throw new Error(`${what}: shapes [${a.shape}] and [${b.shape}] differ`);
}

function fusedAttention({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { queries, keys, values, cosines, sines, bias } = inputs;
  sameShape(`${FUSED_ATTENTION} keys`, queries, keys);
  sameShape(`${FUSED_ATTENTION} values`, queries, values);
  sameShape(`${FUSED_ATTENTION} sines`, cosines, sines);
  const [B, T, , hd] = queries.shape;
  if (bias.shape.join() !== [B, 1, 1, T].join()) throw new Error(`${FUSED_ATTENTION}: bias is [${bias.shape}], expected [${B}, 1, 1, ${T}]`);
  const [R, tableT, half] = cosines.shape;
  if ((R !== 1 && R !== B) || tableT !== T || half * 2 !== hd) {
    throw new Error(`${FUSED_ATTENTION}: rotary tables are [${cosines.shape}], expected [1 or ${B}, ${T}, ${hd / 2}]`);
  }
  const { scale } = attrs as unknown as FusedAttentionAttrs;
  const tiles = { queryTile: QUERY_TILE, keyTile: keyTileFor(hd, backend.device.limits.maxComputeWorkgroupStorageSize) };
  const program = new FusedAttentionProgram(queries.shape as [number, number, number, number], tiles);
  return backend.runWebGPUProgram(program, [queries, keys, values, cosines, sines, bias], 'float32', [{ type: 'float32', data: [scale] }]);
}

function residualLayerNorm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { x, residual, gamma, beta } = inputs;
  sameShape(`${RESIDUAL_LAYER_NORM} residual`, x, residual);
  const D = x.shape[1];
  if (gamma.shape.join() !== String(D) || beta.shape.join() !== String(D)) {
    throw new Error(`${RESIDUAL_LAYER_NORM}: gamma and beta must be [${D}]`);
  }
  const { epsilon } = attrs as unknown as ResidualLayerNormAttrs;
  const program = new ResidualLayerNormProgram(x.shape as [number, number]);
  return backend.runWebGPUProgram(program, [x, residual, gamma, beta], 'float32', [{ type: 'float32', data: [epsilon] }]);
}

function swiglu({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const { gate, up } = inputs;
  sameShape(`${SWIGLU} up`, gate, up);
  return backend.runWebGPUProgram(new SwigluProgram(gate.shape), [gate, up], 'float32');
}

/** The workgroup memory a kernel may use on the active webgpu backend's device. */
export function webGpuWorkgroupBytes(): number {
  return (tf.backend() as unknown as WebGpuBackendLike).device.limits.maxComputeWorkgroupStorageSize;
}

/**
 * Runs `program` on the active webgpu backend outside any registered kernel,
 * as the tile sweep and the tests do; the caller disposes the result.
 */
export function runWebGpuProgram(program: WebGPUProgram, inputs: tf.TensorInfo[], uniforms?: { type: string; data: number[] }[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  return tf.engine().makeTensorFromTensorInfo(backend.runWebGPUProgram(program, inputs, 'float32', uniforms));
}

/** Registers this package's fused kernels for the webgpu backend (once per process). */
export function registerWebGpuKernels(): void {
  const kernels: [string, (args: KernelArgs) => tf.TensorInfo][] = [
    [FUSED_ATTENTION, fusedAttention],
    [RESIDUAL_LAYER_NORM, residualLayerNorm],
    [SWIGLU, swiglu],
  ];
  for (const [kernelName, kernelFunc] of kernels) {
    if (tf.getKernel(kernelName, 'webgpu') !== undefined) continue;
    tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
