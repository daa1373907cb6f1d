import * as tf from '@tensorflow/tfjs-core';
import { sampleMemory } from './memory-watermark.js';

export interface MlpWeights {
  /** [D, 2F]: columns 0..F-1 are fc11 (value), F..2F-1 are fc12 (gate). */
  readonly upGate: tf.Tensor2D;
  /** [F, D]: fc2, transposed. */
  readonly down: tf.Tensor2D;
}

/**
 * SwiGLU as upstream: `fc2(fc11(x) * silu(fc12(x)))`. x: [N, D] → [N, D].
 * Intermediates of width F are freed as soon as they are used: at short
 * lengths this phase, not attention, sets the memory peak.
 */
export function swiglu(weights: MlpWeights, x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const width = weights.down.shape[0];
    const both = tf.matMul(x, weights.upGate); // [N, 2F]
    const [up, gate] = tf.split(both, [width, width], 1); // 2 × [N, F]
    sampleMemory();
    both.dispose();
    const sigmoid = tf.sigmoid(gate);
    const silu = tf.mul(gate, sigmoid); // [N, F]
    gate.dispose();
    sigmoid.dispose();
    const activated = tf.mul(up, silu); // [N, F]
    up.dispose();
    silu.dispose();
    return tf.matMul(activated, weights.down);
  });
}
