import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program.js';

/**
 * SwiGLU's elementwise step as one WGSL kernel: `up · gate · sigmoid(gate)`,
 * in place of tfjs's sigmoid and two multiplications, each a pass over
 * [N, F] and a buffer of its own.
 */

const THREADS = 64;

export class SwigluProgram implements WebGPUProgram {
  readonly variableNames = ['gate', 'up'];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [THREADS, 1, 1];
  readonly size = true;
  readonly shaderKey = 'nomicSwiglu';

  /** shape: [N, F] of gate, up and the output. */
  constructor(shape: readonly number[]) {
    this.outputShape = [...shape];
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    this.dispatch = [Math.ceil(shape.reduce((a, b) => a * b, 1) / THREADS), 1, 1];
  }

  getUserCode(): string {
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      let g = gate[index];
      // As tfjs computes sigmoid: 1 / (1 + e^-g).
      setOutputAtIndex(index, up[index] * g / (1.0 + exp(-g)));
    }
  }
`;
  }
}
