import * as tf from '@tensorflow/tfjs-core';
import { CODE_ALIGNMENT_BYTES, codeWords, F32_MATMUL, Q8_MATMUL } from '../../model/projection.js';
import { WASM_INTERNALS_VERSION, type WasmBackendInternals } from '../wasm-internals.js';
import { instantiateQ8Kernels, instantiateRelaxedKernels, isSharedMemory, type Q8Kernels, type RelaxedKernels, type WasmMemory, type WasmModule } from './kernel-module.js';
import { Q8ThreadPool, type ProductHelpers } from './q8-threads.js';
import { probeRelaxedProduct } from './relaxed-probe.js';
import { raceProducts, type ProductRates } from './product-race.js';
import { InputError } from '../../errors.js';
import type { WeightPacker } from '../../model/build-model.js';
import type { Dtype } from '../../model/projection.js';
import { allocateInWasmHeap } from '../wasm-heap.js';
import { installSimdLayerKernels } from './simd-layers.js';
import { F32Packer, QuantizingPacker, type CodePlacer, type QuantizedPlacer } from './q8-packer.js';

/**
 * Our products on the wasm backend, q8 and float32: our kernel module (`gemm-wat.ts`)
 * instantiated on tfjs-backend-wasm's own memory, reading its inputs where
 * tfjs keeps them and writing into the output tensor it allocates, with no
 * copies. That reads tfjs 4.22's internals: the Emscripten module's memory
 * (`wasmMemory` on the threaded build, `asm.memory` on the other), `_malloc`
 * and `_free`, and each tensor's `memoryOffset`.
 */
const ALIGNMENT = CODE_ALIGNMENT_BYTES;
const align = (address: number) => Math.ceil(address / ALIGNMENT) * ALIGNMENT;

let kernels: Q8Kernels | undefined;
/** The q8 product on relaxed SIMD, where the probe found it exact here. */
let relaxed: RelaxedKernels | undefined;
/** Why the q8 product runs on baseline SIMD128, where it does. */
let relaxedFailure: string | undefined = 'our kernels are not installed';
/** What each product ran at when they were timed against each other (not where one was asked for or relaxed SIMD failed). */
let raced: ProductRates | undefined;
/** On the threaded build, with helpers that split each product with the calling thread. */
let pool: Q8ThreadPool | undefined;

/**
 * What the kernels need from the runtime, for the heap they run on: the
 * module assembled for it (shared or not), the relaxed-SIMD product module
 * (which throws where the engine cannot compile it), and on a shared heap
 * the helper threads (Node's worker threads, a page's Web Workers; none on
 * one thread), given both modules (the second undefined where it is not used).
 */
export interface ProductKernelSetup {
  module(shared: boolean): WasmModule;
  relaxedModule(shared: boolean): WasmModule;
  helpers(module: WasmModule, relaxedModule: WasmModule | undefined, memory: WasmMemory): ProductHelpers | undefined;
  /** Which product to run; by default (`'auto'`) the relaxed one where it is exact and faster. */
  simd?: Q8Simd;
}

/**
 * `'auto'`: the relaxed-SIMD product where the probe finds it exact and it
 * outruns the baseline one here; `'relaxed'`: wherever it is exact, without
 * the race; `'baseline'`: never relaxed SIMD.
 */
export const Q8_SIMD_CHOICES = ['auto', 'relaxed', 'baseline'] as const;
export type Q8Simd = (typeof Q8_SIMD_CHOICES)[number];

/** The product asked for by `value` (an environment variable's, named `source`); unset or empty means `'auto'`. */
export function parseQ8Simd(value: string | undefined, source: string): Q8Simd {
  if (value === undefined || value === '') return 'auto';
  const choice = Q8_SIMD_CHOICES.find((name) => name === value.toLowerCase());
  if (choice === undefined) throw new InputError(source, `"${value}" is not one of ${Q8_SIMD_CHOICES.join(', ')}`);
  return choice;
}

function backendInternals(): WasmBackendInternals {
  return tf.findBackend('wasm') as unknown as WasmBackendInternals;
}

function memoryOf(backend: WasmBackendInternals): WasmMemory | undefined {
  return backend.wasm.wasmMemory ?? backend.wasm.asm?.memory;
}

/** The started wasm backend's heap, where tfjs 4.22 keeps it; undefined before it starts. */
export function wasmBackendMemory(): WasmMemory | undefined {
  const backend = backendInternals();
  return backend === null ? undefined : memoryOf(backend);
}

/**
 * Registers our product kernels once per process on the release whose
 * internals they read; call after the wasm backend has started. Returns why
 * they cannot run here (then `dtype: 'q8'` cannot, and float32 products are
 * XNNPACK's), or undefined.
 */
export function installWasmQ8(wasmVersion: string, setup: ProductKernelSetup): string | undefined {
  if (kernels !== undefined) return undefined;
  if (wasmVersion !== WASM_INTERNALS_VERSION) return `q8 needs @tensorflow/tfjs-backend-wasm ${WASM_INTERNALS_VERSION}, whose memory its kernel reads; this is ${wasmVersion}`;
  const memory = wasmBackendMemory();
  if (memory === undefined) return 'the wasm backend has not started, or its memory is not where tfjs 4.22 keeps it';
  const shared = isSharedMemory(memory);
  const module = setup.module(shared);
  kernels = instantiateQ8Kernels(module, memory);
  const relaxedModule = chooseRelaxed(setup, module, shared);
  if (relaxedModule !== undefined) relaxed = instantiateRelaxedKernels(relaxedModule, memory);
  pool = new Q8ThreadPool({ ...kernels, ...relaxed }, shared ? setup.helpers(module, relaxedModule, memory) : undefined);
  tf.registerKernel({ kernelName: Q8_MATMUL, backendName: 'wasm', kernelFunc: q8MatMul as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: F32_MATMUL, backendName: 'wasm', kernelFunc: f32MatMul as unknown as tf.KernelFunc });
  installSimdLayerKernels(kernels, memory);
  return undefined;
}

/** The relaxed-SIMD module where its product is to run, setting why not otherwise. */
function chooseRelaxed(setup: ProductKernelSetup, module: WasmModule, shared: boolean): WasmModule | undefined {
  const simd = setup.simd ?? 'auto';
  if (simd === 'baseline') {
    relaxedFailure = 'the baseline kernel was asked for';
    return undefined;
  }
  relaxedFailure = probeRelaxedProduct(() => setup.relaxedModule(shared), shared);
  if (relaxedFailure !== undefined) return undefined;
  const relaxedModule = setup.relaxedModule(shared);
  if (simd === 'relaxed') return relaxedModule;
  raced = raceProducts(module, relaxedModule, shared);
  if (raced.relaxed > raced.baseline) return relaxedModule;
  relaxedFailure = `relaxed SIMD is exact here but slower: ${raceFigures(raced)}`;
  return undefined;
}

const raceFigures = ({ relaxed, baseline }: ProductRates) => `${relaxed.toFixed(0)} GOP/s against the baseline kernel's ${baseline.toFixed(0)}`;

/** Chunks of products the helper threads have computed in this process (none on one thread). */
export function productChunksOnHelpers(): number {
  return pool?.helperChunks ?? 0;
}

/**
 * Which q8 product runs: on relaxed SIMD where this engine has it, computes
 * it exactly and runs it faster (or it was asked for), else on baseline
 * SIMD128, and why; `rates` where the two were timed against each other.
 */
export function q8ProductKernel(): { simd: 'relaxed' | 'baseline'; why?: string; rates?: ProductRates } {
  const rates = raced === undefined ? {} : { rates: raced };
  return relaxed !== undefined ? { simd: 'relaxed', ...rates } : { simd: 'baseline', why: relaxedFailure, ...rates };
}

/** How `q8ProductKernel()` reads in a backend report. */
export function describeQ8Product(): string {
  const { simd, why, rates } = q8ProductKernel();
  if (simd === 'baseline') return `q8 products: baseline SIMD128 (${why})`;
  return `q8 products: relaxed SIMD (i32x4.relaxed_dot_i8x16_i7x16_add_s${rates === undefined ? '' : `, ${raceFigures(rates)}`})`;
}

/** Whether our kernels are registered: float32 projections are then packed for ours rather than XNNPACK's. */
export function wasmProductKernelsInstalled(): boolean {
  return kernels !== undefined;
}

function f32MatMul({ inputs, attrs, backend }: { inputs: { x: tf.TensorInfo; packed: tf.TensorInfo }; attrs: { columns: number }; backend: WasmBackendInternals }): tf.TensorInfo {
  const [M, K] = inputs.x.shape;
  const N = attrs.columns;
  const out = backend.makeOutput([M, N], 'float32');
  const offset = (info: tf.TensorInfo) => backend.dataIdMap.get(info.dataId)!.memoryOffset;
  pool!.run('gemm_f32', [offset(inputs.x), M, K, align(offset(inputs.packed)), N, offset(out)], M, K, N);
  return out;
}

function q8MatMul({ inputs, backend }: { inputs: { x: tf.TensorInfo; codes: tf.TensorInfo; scales: tf.TensorInfo }; backend: WasmBackendInternals }): tf.TensorInfo {
  const [M, K] = inputs.x.shape;
  const N = inputs.scales.shape[0];
  const out = backend.makeOutput([M, N], 'float32');
  const offset = (info: tf.TensorInfo) => backend.dataIdMap.get(info.dataId)!.memoryOffset;
  // Each row's codes (int16 for the baseline kernel, bytes for the relaxed one) and scale, aligned as the weights are.
  const codeBytes = relaxed === undefined ? 2 : 1;
  const scratch = backend.wasm._malloc(M * K * codeBytes + M * 4 + 2 * ALIGNMENT);
  try {
    const codes = align(scratch);
    const rowScales = align(codes + M * K * codeBytes);
    const leading = [codes, rowScales, M, K, align(offset(inputs.codes)), offset(inputs.scales), N, offset(out)];
    if (relaxed === undefined) {
      kernels!.quantize_rows(offset(inputs.x), M, K, codes, rowScales);
      pool!.run('gemm', leading, M, K, N);
    } else {
      relaxed.quantize_rows_relaxed(offset(inputs.x), M, K, codes, rowScales);
      pool!.run('gemm_relaxed', leading, M, K, N);
    }
  } finally {
    backend.wasm._free(scratch);
  }
  return out;
}

/** How our kernels' projections are made for `dtype` (once they are installed): q8 codes, or float32 packed, holding that copy only. */
export function wasmKernelPacker(dtype: Dtype): WeightPacker {
  if (dtype === 'q8') return new QuantizingPacker(placeQ8Codes);
  return new F32Packer(placeInWasmHeap, (shape, weight) => allocateInWasmHeap(shape, (target) => target.set(weight)));
}

/** Codes in the wasm heap, from the tensor's first 64-byte boundary, where the kernel reads them. */
export const placeInWasmHeap: CodePlacer = (words, write) => {
  const backend = backendInternals();
  const info = backend.makeOutput([words], 'int32');
  const start = align(backend.dataIdMap.get(info.dataId)!.memoryOffset);
  const tensor = tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
  // The view is taken after the allocation, which may have grown (and so replaced) the heap, and used before the next.
  try {
    write(new Int8Array(backend.wasm.HEAPU8.buffer, start, words * 4 - CODE_ALIGNMENT_BYTES));
  } catch (error) {
    tensor.dispose();
    throw error;
  }
  return tensor;
};

/**
 * A weight's q8 codes in the wasm heap, for the product that runs here: as
 * written, or turned into the relaxed kernel's layout with its column sums.
 */
export const placeQ8Codes: QuantizedPlacer = (K, N, write) => {
  const codes = placeInWasmHeap(codeWords(K, N), write);
  if (relaxed !== undefined) relaxed.relax_codes(align(backendInternals().dataIdMap.get(codes.dataId)!.memoryOffset), K, N);
  return codes;
};
