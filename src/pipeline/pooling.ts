import * as tf from '@tensorflow/tfjs-core';

export const POOLINGS = ['mean', 'cls'] as const;
export type Pooling = (typeof POOLINGS)[number];

/**
 * Pools `last_hidden_state` [B, T, D] to [B, D]. Mean pooling averages every
 * token whose mask is 1, [CLS] and [SEP] included, dividing by the real token
 * count (never the padded length), as nomic-embed-text-v1.5 was trained.
 * The caller disposes the result.
 */
export function pool(hidden: tf.Tensor3D, attentionMask: tf.Tensor2D, pooling: Pooling): tf.Tensor2D {
  return tf.tidy(() => {
    switch (pooling) {
      case 'mean': {
        const mask = tf.expandDims(attentionMask.dtype === 'float32' ? attentionMask : tf.cast(attentionMask, 'float32'), 2); // [B, T, 1]
        const summed = tf.sum(tf.mul(hidden, mask), 1); // [B, D]
        const counts = tf.maximum(tf.sum(mask, 1), 1e-9); // [B, 1]
        return tf.div(summed, counts) as tf.Tensor2D;
      }
      case 'cls':
        return tf.squeeze(tf.slice(hidden, [0, 0, 0], [-1, 1, -1]), [1]) as tf.Tensor2D; // [B, D]
      default: {
        const unknown: never = pooling;
        throw new Error(`unknown pooling ${String(unknown)}`);
      }
    }
  });
}
