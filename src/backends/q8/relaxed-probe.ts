import { instantiateRelaxedKernels, newKernelMemory, type RelaxedKernels, type WasmMemory, type WasmModule } from './kernel-module.js';
import { q8MatMulReference, quantizeWeight } from '../../weights/q8-codes.js';
import { RELAXED_ACTIVATION_MAX } from './relaxed-wat.js';

/**
 * Whether the relaxed-SIMD product is exact in this engine, in each of its
 * compilers: V8 runs a function first on its baseline compiler and later on
 * its optimizing one, and Node 20's baseline compiler (behind
 * `--experimental-wasm-relaxed-simd`) returns wrong sums for
 * `relaxed_dot_i8x16_i7x16_add_s` (twice the dot product, the accumulator
 * dropped) until the optimizing one takes over. So a small product is run
 * once, then enough times for the engine to optimize it, each result against
 * the exact reference; only then is the kernel used.
 */
const M = 8;
const K = 64;
const N = 16;
/**
 * How long the probe keeps calling: Node 20 swapped in the optimized code
 * after 39 to 602 calls, 1.9 to 4.8 ms, in five runs on a 2-core machine
 * (it compiles it on another thread); five times the slowest.
 */
export const PROBE_MS = 25;

/** Returns why the relaxed product cannot be used here, or undefined when it can. */
export function probeRelaxedProduct(compile: () => WasmModule, shared: boolean): string | undefined {
  let kernels: RelaxedKernels;
  let memory: WasmMemory;
  try {
    memory = newKernelMemory(1, shared);
    kernels = instantiateRelaxedKernels(compile(), memory);
  } catch (error) {
    // V8 says which function failed and where before why ("…failed: simd opcode not available, enable with … @+1076").
    const why = /failed: ([^@]*)/.exec((error as Error).message)?.[1]?.trim() ?? (error as Error).message.split('\n')[0];
    return `this engine has no relaxed SIMD (${why})`;
  }
  const x = Float32Array.from({ length: M * K }, (_, i) => (i % 61 === 0 ? 0 : Math.sin(i * 0.7) * (1 + (i % 5))));
  x.fill(0, K, 2 * K);
  const weight = quantizeWeight(
    Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.3) * 0.1),
    K,
    N,
  );
  const expected = q8MatMulReference(x, M, K, weight, N, RELAXED_ACTIVATION_MAX);
  // One 64 KiB page: x, activation bytes, row scales, codes and their sums, column scales, output, each 64-byte aligned.
  const [xAt, codesAt, rowScalesAt, weightsAt, scalesAt, outAt] = [0, 2048, 2560, 2624, 3712, 3776];
  new Float32Array(memory.buffer, xAt, M * K).set(x);
  new Int8Array(memory.buffer, weightsAt, K * N).set(weight.codes);
  new Float32Array(memory.buffer, scalesAt, N).set(weight.scales);
  kernels.relax_codes(weightsAt, K, N);
  const out = new Float32Array(memory.buffer, outAt, M * N);
  const start = performance.now();
  for (let call = 0; call === 0 || performance.now() - start < PROBE_MS; call++) {
    out.fill(Number.NaN);
    kernels.quantize_rows_relaxed(xAt, M, K, codesAt, rowScalesAt);
    kernels.gemm_relaxed(codesAt, rowScalesAt, M, K, weightsAt, scalesAt, N, outAt, 0, M, 0, N);
    const wrong = out.findIndex((value, i) => value !== expected[i]);
    if (wrong >= 0) {
      const tier = call === 0 ? 'on its first call' : `after ${call} calls`;
      return `this engine computes relaxed SIMD's dot product wrongly ${tier} (${out[wrong]} for ${expected[wrong]})`;
    }
  }
  return undefined;
}
