import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program.js';

/**
 * `LayerNorm(x + residual) · gamma + beta` over the last axis as one WGSL
 * kernel: one workgroup per row reads both inputs once, keeps the sums in
 * registers, and reduces mean and biased variance in workgroup memory (two
 * passes, as torch computes them), instead of the seven tfjs kernels and
 * five intermediate tensors of the composite.
 */

const THREADS = 64;

export class ResidualLayerNormProgram implements WebGPUProgram {
  readonly variableNames = ['x', 'residual', 'gamma', 'beta'];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [THREADS, 1, 1];
  readonly uniforms = 'epsilon : f32, ';
  shaderKey: string;
  private readonly width: number;

  /** shape: [N, D] of x, residual and the output. */
  constructor(shape: readonly [number, number]) {
    const [N, D] = shape;
    this.outputShape = [N, D];
    this.dispatchLayout = { x: [0, 1] };
    this.dispatch = [N, 1, 1];
    this.width = D;
    this.shaderKey = `nomicResidualLayerNorm_${D}`;
  }

  getUserCode(): string {
    const D = this.width;
    const perThread = Math.ceil(D / THREADS);
    return `
  const D = ${D};
  const WG = ${THREADS};
  const PER = ${perThread};
  var<workgroup> partial : array<f32, WG>;

  fn reduceSum(tid : i32, value : f32) -> f32 {
    partial[tid] = value;
    workgroupBarrier();
    for (var stride = WG / 2; stride > 0; stride = stride / 2) {
      if (tid < stride) { partial[tid] += partial[tid + stride]; }
      workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
  }

  fn main(index : i32) {
    let row = index / WG;
    let tid = index % WG;
    let valid = row < uniforms.xShape[0];
    var sums : array<f32, PER>;
    var total = 0.0;
    for (var i = 0; i < PER; i++) {
      let c = tid + i * WG;
      if (valid && c < D) {
        sums[i] = x[row * D + c] + residual[row * D + c];
        total += sums[i];
      }
    }
    let mean = reduceSum(tid, total) / f32(D);
    var squares = 0.0;
    for (var i = 0; i < PER; i++) {
      let c = tid + i * WG;
      if (valid && c < D) {
        let centered = sums[i] - mean;
        squares += centered * centered;
      }
    }
    let inverse = inverseSqrt(reduceSum(tid, squares) / f32(D) + uniforms.epsilon);
    for (var i = 0; i < PER; i++) {
      let c = tid + i * WG;
      if (valid && c < D) {
        setOutputAtIndex(row * D + c, (sums[i] - mean) * inverse * gamma[c] + beta[c]);
      }
    }
  }
`;
  }
}
