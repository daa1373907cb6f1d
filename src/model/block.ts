import * as tf from '@tensorflow/tfjs-core';
import { selfAttention, type AttentionContext, type AttentionWeights } from './attention.js';
import { residualLayerNorm } from './fused-ops.js';
import { swiglu, type MlpWeights } from './mlp.js';

export interface BlockWeights {
  readonly attention: AttentionWeights;
  readonly mlp: MlpWeights;
  readonly norm1: { readonly weight: tf.Tensor1D; readonly bias: tf.Tensor1D };
  readonly norm2: { readonly weight: tf.Tensor1D; readonly bias: tf.Tensor1D };
}

/** Post-norm residual block: `h = norm1(x + attn(x))`, then `norm2(h + mlp(h))`. x: [B·T, D]. */
export function block(weights: BlockWeights, x: tf.Tensor2D, ctx: AttentionContext, eps: number): tf.Tensor2D {
  const { norm1, norm2 } = weights;
  const h = residualNorm(x, selfAttention(weights.attention, x, ctx), eps, norm1);
  try {
    return residualNorm(h, swiglu(weights.mlp, h), eps, norm2);
  } finally {
    h.dispose();
  }
}

/** `norm(input + branch)`; frees `branch`, which only this sum uses. */
function residualNorm(
  input: tf.Tensor2D,
  branch: tf.Tensor2D,
  eps: number,
  norm: { readonly weight: tf.Tensor1D; readonly bias: tf.Tensor1D },
): tf.Tensor2D {
  try {
    return residualLayerNorm(input, branch, norm.weight, norm.bias, eps);
  } finally {
    branch.dispose();
  }
}
