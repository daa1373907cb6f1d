import * as tf from '@tensorflow/tfjs-core';
import {
  RESIDUAL_LAYER_NORM,
  ROTARY_HEADS,
  type ResidualLayerNormAttrs,
  type RotaryHeadsAttrs,
} from '../model/fused-ops.js';
import { simdResidualLayerNorm } from './q8/simd-layers.js';
import { WASM_INTERNALS_VERSION, type WasmBackendInternals } from './wasm-internals.js';

/**
 * The model's fused ops as wasm-backend kernels written in JavaScript over
 * views of the WebAssembly heap (tfjs 4.22's `makeOutput` and
 * `typedArrayFromHeap`, as the Slice kernel uses them).
 *
 * tfjs-backend-wasm runs each op as its own pass with a fixed cost per call,
 * and broadcasting ones (a row's mean subtracted from it) slowly: a LayerNorm
 * is nine kernels, rotary on one projection ten. At the small batches a
 * service sees, those fixed costs, not the products, are most of a forward
 * pass. One pass each over memory here does the same arithmetic: rotary
 * equals the composite bit for bit (each step rounded to float32 as tfjs
 * rounds it); LayerNorm sums in float64, so it is closer to exact than the
 * composite's float32 sums.
 */

type KernelArgs<I extends string, A> = { inputs: Record<I, tf.TensorInfo>; attrs: A; backend: WasmBackendInternals };

let installed = false;

/**
 * Registers the kernels once per process, on the tfjs-backend-wasm release
 * whose internals they read; call after the wasm backend is registered.
 * Returns why they were not registered, or undefined when they are.
 */
export function installWasmFusedKernels(wasmVersion: string): string | undefined {
  if (wasmVersion !== WASM_INTERNALS_VERSION) return `@tensorflow/tfjs-backend-wasm ${wasmVersion}: LayerNorm and rotary run as tfjs composites`;
  if (installed) return undefined;
  if (tf.findBackend('wasm') === null) return 'the wasm backend is not registered';
  tf.registerKernel({
    kernelName: RESIDUAL_LAYER_NORM,
    backendName: 'wasm',
    kernelFunc: residualLayerNormKernel as unknown as tf.KernelFunc,
  });
  tf.registerKernel({ kernelName: ROTARY_HEADS, backendName: 'wasm', kernelFunc: rotaryHeadsKernel as unknown as tf.KernelFunc });
  installed = true;
  return undefined;
}

function residualLayerNormKernel({ inputs, attrs, backend }: KernelArgs<'x' | 'residual' | 'gamma' | 'beta', ResidualLayerNormAttrs>): tf.TensorInfo {
  const [rows, width] = inputs.x.shape;
  const out = backend.makeOutput([rows, width], 'float32');
  if (simdResidualLayerNorm(backend, inputs, attrs.epsilon, out)) return out;
  // Views are taken after the allocation, which may grow (and so detach) the heap.
  const [x, residual, gamma, beta, target] = [inputs.x, inputs.residual, inputs.gamma, inputs.beta, out].map(
    (info) => backend.typedArrayFromHeap(info) as Float32Array,
  );
  residualLayerNormRows(x, residual, gamma, beta, attrs.epsilon, rows, width, target);
  return out;
}

/** `LayerNorm(x + residual)` of each row, biased variance; `target` may not alias the inputs. */
export function residualLayerNormRows(
  x: Float32Array,
  residual: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  epsilon: number,
  rows: number,
  width: number,
  target: Float32Array,
): void {
  for (let row = 0; row < rows; row++) {
    const start = row * width;
    let sum = 0;
    for (let j = 0; j < width; j++) {
      const v = Math.fround(x[start + j] + residual[start + j]); // float32, as the composite's add
      target[start + j] = v;
      sum += v;
    }
    const mean = sum / width;
    let squares = 0;
    for (let j = 0; j < width; j++) {
      const d = target[start + j] - mean;
      squares += d * d;
    }
    const inverse = 1 / Math.sqrt(squares / width + epsilon);
    for (let j = 0; j < width; j++) target[start + j] = (target[start + j] - mean) * inverse * gamma[j] + beta[j];
  }
}

function rotaryHeadsKernel({ inputs, attrs, backend }: KernelArgs<'x' | 'cosines' | 'sines', RotaryHeadsAttrs>): tf.TensorInfo {
  const [N, D] = inputs.x.shape;
  const { batch: B, heads: H } = attrs;
  const T = N / B;
  const hd = D / H;
  const out = backend.makeOutput([B, H, T, hd], 'float32');
  const [x, cos, sin, target] = [inputs.x, inputs.cosines, inputs.sines, out].map((info) => backend.typedArrayFromHeap(info) as Float32Array);
  rotateHeads(x, cos, sin, inputs.cosines.shape[0], [B, T, H, hd], attrs.scale, target);
  return out;
}

/**
 * x [B·T, H·hd] → target [B, H, T, hd]: `[x1·cos − x2·sin, x2·cos + x1·sin]·scale`
 * with tables [R, T, hd/2] (R = 1 or B). Each product, sum and the scaling is
 * rounded to float32 where tfjs's separate ops round it (`Math.fround`; a
 * float32 sum or product computed in float64 and rounded once is the float32
 * result), so the output equals the composite's exactly.
 */
export function rotateHeads(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  tableRows: number,
  [B, T, H, hd]: readonly number[],
  scale: number,
  target: Float32Array,
): void {
  const f32 = Math.fround;
  const half = hd / 2;
  const factor = f32(scale);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const angles = ((tableRows === 1 ? 0 : b) * T + t) * half;
      const source = (b * T + t) * H * hd;
      for (let h = 0; h < H; h++) {
        const from = source + h * hd;
        const to = ((b * H + h) * T + t) * hd;
        for (let j = 0; j < half; j++) {
          const x1 = x[from + j];
          const x2 = x[from + half + j];
          const c = cos[angles + j];
          const s = sin[angles + j];
          target[to + j] = f32(f32(x1 * c) - f32(x2 * s)) * factor;
          target[to + half + j] = f32(f32(x2 * c) + f32(x1 * s)) * factor;
        }
      }
    }
  }
}
