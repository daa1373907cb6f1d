import * as tf from '@tensorflow/tfjs-core';
import { FUSED_ATTENTION, SWIGLU, type FusedAttentionAttrs } from '../../model/fused-ops.js';
import type { WasmBackendInternals } from '../wasm-internals.js';
import { useQuickFiniteScan } from '../../weights/load.js';
import type { Q8Kernels, WasmMemory } from './kernel-module.js';

/**
 * The layer kernels of our module (`layer-wat.ts`) as wasm-backend kernels:
 * rotary attention registered under the model's fused op, and LayerNorm for
 * the fused kernel that `wasm-fused.ts` registers (which runs its
 * JavaScript form where ours cannot), SwiGLU's elementwise step, and the
 * loader's search for NaN and infinite weights. They run on the calling thread.
 * SwiGLU's sigmoid alone is faster in XNNPACK (1 ns a value against our
 * exp's 1.5–1.9), but tfjs's three passes cost more than our one, and its
 * pool threads, woken for them, spin on the cores our product threads need
 * (11 ms of a core per 22-token query).
 */
let kernels: Q8Kernels | undefined;
let heap: WasmMemory | undefined;

/** Registers them; called once our module runs on the wasm backend's heap, `memory`. */
export function installSimdLayerKernels(module: Q8Kernels, memory: WasmMemory): void {
  kernels = module;
  heap = memory;
  useQuickFiniteScan(simdFirstNonFinite);
  tf.registerKernel({ kernelName: FUSED_ATTENTION, backendName: 'wasm', kernelFunc: attentionKernel as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: SWIGLU, backendName: 'wasm', kernelFunc: swigluKernel as unknown as tf.KernelFunc });
}

/** Whether our attention kernel takes heads of `headDim` floats: it rotates half-heads a vector at a time. */
export function simdAttentionTakes(headDim: number): boolean {
  return headDim % 8 === 0;
}

/**
 * The index of the first NaN or infinity of `data` (or −1) when it is a view
 * of the heap our module runs on; undefined for other memory (or a heap since
 * grown), which the loader then searches in JavaScript.
 */
export function simdFirstNonFinite(data: Float32Array): number | undefined {
  if (kernels === undefined || heap === undefined || data.buffer !== heap.buffer) return undefined;
  return kernels.first_non_finite(data.byteOffset, data.length);
}

const offset = (backend: WasmBackendInternals, info: tf.TensorInfo) => backend.dataIdMap.get(info.dataId)!.memoryOffset;

/**
 * `LayerNorm(x + residual)` of each row into `out`, when our module runs
 * here and rows are whole vectors (width a multiple of 4); false otherwise.
 */
export function simdResidualLayerNorm(
  backend: WasmBackendInternals,
  { x, residual, gamma, beta }: Record<'x' | 'residual' | 'gamma' | 'beta', tf.TensorInfo>,
  epsilon: number,
  out: tf.TensorInfo,
): boolean {
  const [rows, width] = x.shape;
  if (kernels === undefined || width % 4 !== 0) return false;
  const at = (info: tf.TensorInfo) => offset(backend, info);
  kernels.layer_norm(at(x), at(residual), at(gamma), at(beta), rows, width, epsilon, at(out));
  return true;
}

type AttentionInputs = Record<'queries' | 'keys' | 'values' | 'cosines' | 'sines' | 'bias', tf.TensorInfo>;

function attentionKernel({ inputs, attrs, backend }: { inputs: AttentionInputs; attrs: FusedAttentionAttrs; backend: WasmBackendInternals }): tf.TensorInfo {
  const [B, T, H, hd] = inputs.queries.shape;
  if (!simdAttentionTakes(hd)) throw new Error(`the wasm attention kernel takes heads of a multiple of 8 floats, not ${hd}`);
  const out = backend.makeOutput([B, T, H, hd], 'float32');
  // Rotated queries and keys (the keys padded to a multiple of 4 with zeros), one query's scores, the sequence's key
  // bias (both padded alike), one query's weighted sum; 16-byte aligned.
  const paddedT = Math.ceil(T / 4) * 4;
  const scratch = backend.wasm._malloc(4 * (T * hd + paddedT * hd + 2 * paddedT + hd) + 16);
  try {
    const at = (info: tf.TensorInfo) => offset(backend, info);
    const { queries, keys, values, cosines, sines, bias } = inputs;
    const tableRows = cosines.shape[0];
    kernels!.attention(at(queries), at(keys), at(values), at(cosines), at(sines), tableRows, at(bias), B, T, H, hd, attrs.scale, at(out), Math.ceil(scratch / 16) * 16);
  } finally {
    backend.wasm._free(scratch);
  }
  return out;
}

function swigluKernel({ inputs, backend }: { inputs: Record<'gate' | 'up', tf.TensorInfo>; backend: WasmBackendInternals }): tf.TensorInfo {
  const { gate, up } = inputs;
  if (gate.shape.join() !== up.shape.join()) throw new Error(`${SWIGLU}: gate [${gate.shape}] and up [${up.shape}] differ in shape`);
  const out = backend.makeOutput(gate.shape, 'float32');
  kernels!.swiglu(offset(backend, gate), offset(backend, up), tf.util.sizeFromShape(gate.shape), offset(backend, out));
  return out;
}
