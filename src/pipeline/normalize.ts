import * as tf from '@tensorflow/tfjs-core';

/**
 * L2 normalisation over the last axis, `x / max(‖x‖₂, 1e-12)` as
 * `torch.nn.functional.normalize`: an all-zero vector stays zero instead of NaN.
 * The caller disposes the result.
 */
export function l2Normalize(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', -1, true), 1e-12)) as tf.Tensor2D);
}
