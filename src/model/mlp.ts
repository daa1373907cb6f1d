import * as tf from '@tensorflow/tfjs-core';

export interface MlpWeights {
  /** [D, 2F]: columns 0..F-1 are fc11 (value), F..2F-1 are fc12 (gate). */
  readonly upGate: tf.Tensor2D;
  /** [F, D]: fc2, transposed. */
  readonly down: tf.Tensor2D;
}

/** SwiGLU as upstream: `fc2(fc11(x) * silu(fc12(x)))`. x: [N, D] → [N, D]. */
export function swiglu(weights: MlpWeights, x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const width = weights.down.shape[0];
    const [up, gate] = tf.split(tf.matMul(x, weights.upGate), [width, width], 1); // 2 × [N, F]
    const activated = tf.mul(up, tf.mul(gate, tf.sigmoid(gate))); // up · silu(gate)
    return tf.matMul(activated, weights.down);
  });
}
