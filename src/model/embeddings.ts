import * as tf from '@tensorflow/tfjs-core';
import { layerNorm } from './layer-norm.js';

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
    return layerNorm(tf.add(words, types), eps, weights.normWeight, weights.normBias) as tf.Tensor2D;
  });
}
