/**
 * Weights and activations in int8, as the q8 kernels take them. These are the
 * JavaScript forms: weights are quantized once, as they load or by the
 * converter (a q8 checkpoint holds the packed codes as the kernels read them),
 * and the reference product (`q8MatMulReference`) is what the kernels are
 * tested against and what the `cpu` backend runs.
 */

/** Largest code: symmetric int8 without -128, so that a code's negation is a code. */
export const Q8_MAX = 127;

/** 1.5 · 2⁵²: adding it and taking it away leaves the nearest integer, ties to even, for any |value| < 2⁵¹. */
const ROUNDING = 6755399441055744;

/** Round half to even, as `f32x4.nearest` does, by float64 addition's own rounding (5× quicker than `Math.round` and a fix-up). */
export function roundHalfEven(value: number): number {
  return value + ROUNDING - ROUNDING;
}

/** Per-scale quantization of one value: `round(value · inverse)` with float32 rounding, as the kernel does. */
function code(value: number, inverse: number): number {
  return roundHalfEven(Math.fround(value * inverse));
}

/** float32 `levels / max` and `max / levels`, or zeros for an all-zero vector (whose codes are all 0). */
function scalesFor(max: number, levels = Q8_MAX): { inverse: number; scale: number } {
  const f32 = Math.fround;
  return max > 0 ? { inverse: f32(levels / max), scale: f32(max / levels) } : { inverse: 0, scale: 0 };
}

export interface QuantizedMatrix {
  /** int8 codes in the kernel's packed layout (see `gemm-wat.ts`): `[N/8][K/2][8][2]`. */
  readonly codes: Int8Array;
  /** float32 [N]: one scale per output column. */
  readonly scales: Float32Array;
}

/**
 * A [K, N] row-major float32 weight (the runtime layout: x · W) as int8 codes
 * with one scale per output column, packed for the kernel. K must be even and
 * N a multiple of 8.
 */
export function quantizeWeight(weight: Float32Array, K: number, N: number, codes: Int8Array = new Int8Array(K * N)): QuantizedMatrix {
  if (K % 2 !== 0 || N % 8 !== 0) throw new Error(`a q8 weight needs an even input width and a multiple of 8 outputs, not [${K}, ${N}]`);
  const maxima = new Float32Array(N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n++) {
      const magnitude = Math.abs(weight[row + n]);
      if (magnitude > maxima[n]) maxima[n] = magnitude;
    }
  }
  const scales = new Float32Array(N);
  const inverses = new Float32Array(N);
  for (let n = 0; n < N; n++) ({ scale: scales[n], inverse: inverses[n] } = scalesFor(maxima[n]));
  // Row by row, as the weight lies in memory; each value to its place in the packed layout (see packedIndex).
  const blockStride = (K >> 1) * 16;
  for (let k = 0; k < K; k++) {
    const row = k * N;
    const pair = (k >> 1) * 16 + (k & 1);
    for (let n = 0; n < N; n++) codes[(n >> 3) * blockStride + pair + (n & 7) * 2] = Math.fround(weight[row + n] * inverses[n]) + ROUNDING - ROUNDING;
  }
  return { codes, scales };
}

/** Where w(k, n) sits in the packed layout. */
export function packedIndex(k: number, n: number, K: number): number {
  return ((n >> 3) * (K >> 1) + (k >> 1)) * 16 + (n & 7) * 2 + (k & 1);
}

/** The float32 [K, N] weight that packed codes and their column scales stand for: `code · scale`. */
export function dequantizeWeight({ codes, scales }: QuantizedMatrix, K: number, N: number, target: Float32Array = new Float32Array(K * N)): Float32Array {
  for (let k = 0; k < K; k++) {
    for (let n = 0; n < N; n++) target[k * N + n] = codes[packedIndex(k, n, K)] * scales[n];
  }
  return target;
}

/**
 * Each row of x [M, K] as codes (int16, values in -levels..levels) and one
 * scale, as the kernel's `quantize_rows` (127 levels) or the relaxed
 * kernel's `quantize_rows_relaxed` (63, each code then stored plus 64).
 */
export function quantizeRows(x: Float32Array, M: number, K: number, levels = Q8_MAX): { codes: Int16Array; scales: Float32Array } {
  const codes = new Int16Array(M * K);
  const scales = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    let max = 0;
    for (let k = 0; k < K; k++) max = Math.max(max, Math.abs(x[m * K + k]));
    const { scale, inverse } = scalesFor(max, levels);
    scales[m] = scale;
    for (let k = 0; k < K; k++) codes[m * K + k] = code(x[m * K + k], inverse);
  }
  return { codes, scales };
}

/**
 * x [M, K] times a quantized [K, N] weight: activations quantized per row,
 * exact integer sums, then `float(sum) · (columnScale · rowScale)`, each step
 * rounded to float32 as the kernel rounds it. Bit for bit the kernel's result;
 * with `levels` 63, the relaxed kernel's.
 */
export function q8MatMulReference(x: Float32Array, M: number, K: number, weight: QuantizedMatrix, N: number, levels = Q8_MAX): Float32Array {
  const f32 = Math.fround;
  const rows = quantizeRows(x, M, K, levels);
  const out = new Float32Array(M * N);
  const { codes } = weight;
  for (let n = 0; n < N; n++) {
    // Column n's codes: pairs (k, k+1) at 16-byte steps from its place in its block (see packedIndex).
    const column = (n >> 3) * (K >> 1) * 16 + (n & 7) * 2;
    for (let m = 0; m < M; m++) {
      const row = m * K;
      let sum = 0;
      for (let k = 0, at = column; k < K; k += 2, at += 16) sum += rows.codes[row + k] * codes[at] + rows.codes[row + k + 1] * codes[at + 1];
      out[m * N + n] = f32(f32(sum) * f32(weight.scales[n] * rows.scales[m]));
    }
  }
  return out;
}
