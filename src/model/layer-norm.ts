import * as tf from '@tensorflow/tfjs-core';

/**
 * LayerNorm over the last axis with the biased variance, as `torch.nn.LayerNorm`.
 * (Matryoshka's affine-free layer norm runs on read-back vectors, in `pipeline/finish-vector.ts`.)
 */
export function layerNorm(x: tf.Tensor, eps: number, weight: tf.Tensor1D, bias: tf.Tensor1D): tf.Tensor {
  return tf.tidy(() => {
    const centered = tf.sub(x, tf.mean(x, -1, true));
    const variance = tf.mean(tf.square(centered), -1, true);
    const normalized = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normalized, weight), bias);
  });
}
