import * as tf from '@tensorflow/tfjs-core';
import type { EncoderInputs } from '../model/nomic-bert.js';

/** [PAD] in the BERT vocabulary; padded positions are masked, so the id only needs to be valid. */
const PAD_ID = 0;

/**
 * Right-pads token id sequences to the longest one: int32 ids, float32 attention
 * mask (1 real, 0 pad) and token types (all 0: a single segment), each [B, T],
 * and each row's length. The caller disposes the three tensors.
 */
export function toEncoderInputs(sequences: readonly Int32Array[]): Required<EncoderInputs> {
  const B = sequences.length;
  const T = Math.max(...sequences.map((s) => s.length));
  const ids = new Int32Array(B * T).fill(PAD_ID);
  // A float mask from the start: pooling needs one, and tfjs-backend-webgpu casts int32 to float32 by
  // relabelling the int32 buffer, which some of its kernels (Transpose) then fail to compile against.
  const mask = new Float32Array(B * T);
  sequences.forEach((sequence, row) => {
    ids.set(sequence, row * T);
    mask.fill(1, row * T, row * T + sequence.length);
  });
  return {
    inputIds: tf.tensor2d(ids, [B, T], 'int32'),
    attentionMask: tf.tensor2d(mask, [B, T], 'float32'),
    tokenTypeIds: tf.zeros([B, T], 'int32'),
    lengths: sequences.map((s) => s.length),
  };
}
