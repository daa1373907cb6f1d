import * as tf from '@tensorflow/tfjs-core';
import { fusedSwiglu, hasFusedKernel, SWIGLU } from './fused-ops.js';
import { project, type Projection } from './projection.js';

export interface MlpWeights {
  /** [D, F]: fc11, the value projection, transposed. */
  readonly up: Projection;
  /** [D, F]: fc12, the gate, transposed. */
  readonly gate: Projection;
  /** [F, D]: fc2, transposed. */
  readonly down: Projection;
}

/**
 * SwiGLU as upstream: `fc2(fc11(x) * silu(fc12(x)))`. x: [N, D] → [N, D].
 * Intermediates of width F are freed as soon as they are used: at short
 * lengths this phase, not attention, sets the memory peak.
 */
export function swiglu(weights: MlpWeights, x: tf.Tensor2D): tf.Tensor2D {
  if (hasFusedKernel(SWIGLU)) {
    return tf.tidy(() => {
      const gate = project(x, weights.gate); // [N, F]
      const up = project(x, weights.up); // [N, F]
      const activated = fusedSwiglu(gate, up); // [N, F]
      gate.dispose();
      up.dispose();
      return project(activated as tf.Tensor2D, weights.down);
    });
  }
  return tf.tidy(() => {
    const gate = project(x, weights.gate); // [N, F]
    const sigmoid = tf.sigmoid(gate);
    const silu = tf.mul(gate, sigmoid); // [N, F]
    gate.dispose();
    sigmoid.dispose();
    const up = project(x, weights.up); // [N, F]
    const activated = tf.mul(up, silu); // [N, F]
    up.dispose();
    silu.dispose();
    return project(activated as tf.Tensor2D, weights.down);
  });
}
