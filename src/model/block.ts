import * as tf from '@tensorflow/tfjs-core';
import { selfAttention, type AttentionContext, type AttentionWeights } from './attention.js';
import { layerNorm } from './layer-norm.js';
import { swiglu, type MlpWeights } from './mlp.js';

export interface BlockWeights {
  readonly attention: AttentionWeights;
  readonly mlp: MlpWeights;
  readonly norm1: { readonly weight: tf.Tensor1D; readonly bias: tf.Tensor1D };
  readonly norm2: { readonly weight: tf.Tensor1D; readonly bias: tf.Tensor1D };
}

/** Post-norm residual block: `norm1(x + attn(x))`, then `norm2(h + mlp(h))`. x: [B·T, D]. */
export function block(weights: BlockWeights, x: tf.Tensor2D, ctx: AttentionContext, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { norm1, norm2 } = weights;
    const h = layerNorm(tf.add(x, selfAttention(weights.attention, x, ctx)), eps, norm1.weight, norm1.bias) as tf.Tensor2D;
    return layerNorm(tf.add(h, swiglu(weights.mlp, h)), eps, norm2.weight, norm2.bias) as tf.Tensor2D;
  });
}
