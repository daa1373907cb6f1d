import * as tf from '@tensorflow/tfjs-core';
import { layerNorm } from '../model/layer-norm.js';
import { l2Normalize } from './normalize.js';

/** Epsilon of the affine-free layer norm in Nomic's Matryoshka recipe (`F.layer_norm` default). */
export const MATRYOSHKA_LAYER_NORM_EPS = 1e-5;

/**
 * Nomic's Matryoshka recipe: layer norm without affine parameters over the
 * full pooled vector, keep the first `dimensions` values, then L2-normalise.
 * The layer norm runs before truncation, so a 256-d vector is not simply the
 * first 256 values of the 768-d one. pooled: [B, D] → [B, dimensions].
 * The caller disposes the result.
 */
export function matryoshka(pooled: tf.Tensor2D, dimensions: number): tf.Tensor2D {
  return tf.tidy(() => {
    const normed = layerNorm(pooled, MATRYOSHKA_LAYER_NORM_EPS) as tf.Tensor2D;
    return l2Normalize(tf.slice(normed, [0, 0], [-1, dimensions]));
  });
}
