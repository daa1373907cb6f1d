import * as tf from '@tensorflow/tfjs-core';
import { residualLayerNorm } from './fused-ops.js';

export interface EmbeddingWeights {
  readonly word: tf.Tensor2D; // [V, D]
  readonly tokenType: tf.Tensor2D; // [types, D]
  readonly normWeight: tf.Tensor1D; // [D]
  readonly normBias: tf.Tensor1D; // [D]
}

/**
 * Word + token-type embeddings, then `emb_ln`. Nomic BERT has no learned
 * position embeddings: positions enter through rotary attention.
 * Returns [B·T, D]; the caller disposes it.
 */
export function embed(
  weights: EmbeddingWeights,
  inputIds: tf.Tensor2D,
  tokenTypeIds: tf.Tensor2D,
  eps: number,
): tf.Tensor2D {
  return tf.tidy(() => {
    const words = tf.gather(weights.word, tf.reshape(inputIds, [-1])); // [B·T, D]
    const types = tf.gather(weights.tokenType, tf.reshape(tokenTypeIds, [-1])); // [B·T, D]
    // LayerNorm(words + types): the same sum-then-normalise as a residual block's, one fused kernel where there is one.
    return residualLayerNorm(words as tf.Tensor2D, types as tf.Tensor2D, weights.normWeight, weights.normBias, eps);
  });
}
