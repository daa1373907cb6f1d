import * as tf from '@tensorflow/tfjs-core';

export interface RotarySettings {
  readonly headDim: number;
  readonly base: number;
  /** Dynamic NTK factor, or null for plain rotary. */
  readonly scalingFactor: number | null;
  readonly maxTrainedPositions: number;
}

/**
 * The rotary base for a sequence of `length` real tokens. Upstream's dynamic NTK
 * rule rescales the base once the length exceeds `max_trained_positions`:
 * `base · (s·L/max − (s − 1))^(d/(d − 2))`. Here L is the sequence's own length,
 * never the padded batch length, so a text's embedding does not depend on its
 * batch neighbours.
 */
export function rotaryBase(settings: RotarySettings, length: number): number {
  const { base, scalingFactor: s, maxTrainedPositions: max, headDim: d } = settings;
  if (s === null || length <= max) return base;
  return base * ((s * length) / max - (s - 1)) ** (d / (d - 2));
}

/**
 * cos and sin of the rotary angles for positions 0..positions-1, [positions, d/2]
 * row-major. Every step is rounded to float32 as the reference computes it
 * (`inv_freq`, positions and angles are float32 tensors there), because at
 * position 8000 one float32 ulp of the angle is already 5e-4 rad.
 */
export function rotaryTable(base: number, headDim: number, positions: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const f32 = Math.fround;
  const invFreq = new Float32Array(half);
  for (let j = 0; j < half; j++) invFreq[j] = f32(1 / f32(f32(base) ** f32((2 * j) / headDim)));
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let j = 0; j < half; j++) {
      const angle = f32(p * invFreq[j]);
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** One table per base, stacked: cos and sin [bases, positions, d/2] row-major. */
export function stackedRotaryTables(bases: readonly number[], headDim: number, positions: number): { cos: Float32Array; sin: Float32Array } {
  const size = positions * (headDim / 2);
  const cos = new Float32Array(bases.length * size);
  const sin = new Float32Array(bases.length * size);
  bases.forEach((base, row) => {
    const table = rotaryTable(base, headDim, positions);
    cos.set(table.cos, row * size);
    sin.set(table.sin, row * size);
  });
  return { cos, sin };
}

export interface RotaryTables {
  /** [B or 1, 1, T, d/2]; broadcast over heads. */
  readonly cos: tf.Tensor4D;
  readonly sin: tf.Tensor4D;
}

/**
 * Owns the plain (unscaled) rotary table, built once and grown only when a
 * longer batch arrives; values at a position never depend on the table's size.
 */
export class RotaryEmbedding {
  private plain: { cos: tf.Tensor2D; sin: tf.Tensor2D; positions: number } | undefined;

  constructor(readonly settings: RotarySettings) {}

  /** Whether some row of a batch padded to T could need NTK scaling (a row's length is at most T). */
  mayScale(T: number): boolean {
    return rotaryBase(this.settings, T) !== this.settings.base;
  }

  /**
   * Tables for a right-padded batch of length T whose rows hold `lengths` real
   * tokens. Rows that need NTK scaling get their own table. The caller disposes
   * both tensors.
   */
  tables(lengths: readonly number[], T: number): RotaryTables {
    const half = this.settings.headDim / 2;
    const bases = lengths.map((length) => rotaryBase(this.settings, length));
    if (bases.every((base) => base === this.settings.base)) {
      const plain = this.plainTable(T);
      const window = (table: tf.Tensor2D) =>
        tf.tidy(() => tf.reshape(tf.slice(table, [0, 0], [T, half]), [1, 1, T, half]) as tf.Tensor4D);
      return { cos: window(plain.cos), sin: window(plain.sin) };
    }
    const { cos, sin } = stackedRotaryTables(bases, this.settings.headDim, T);
    return {
      cos: tf.tensor4d(cos, [lengths.length, 1, T, half]),
      sin: tf.tensor4d(sin, [lengths.length, 1, T, half]),
    };
  }

  private plainTable(T: number) {
    if (this.plain === undefined || this.plain.positions < T) {
      this.dispose();
      // Grow in powers of two so a stream of ever-longer batches rebuilds rarely.
      const positions = Math.max(512, 2 ** Math.ceil(Math.log2(T)));
      const table = rotaryTable(this.settings.base, this.settings.headDim, positions);
      const half = this.settings.headDim / 2;
      this.plain = {
        cos: tf.keep(tf.tensor2d(table.cos, [positions, half])),
        sin: tf.keep(tf.tensor2d(table.sin, [positions, half])),
        positions,
      };
    }
    return this.plain;
  }

  dispose(): void {
    this.plain?.cos.dispose();
    this.plain?.sin.dispose();
    this.plain = undefined;
  }
}

/**
 * Non-interleaved ("rotate-half") rotary: the head vector is split into halves
 * x1, x2 and becomes [x1·cos − x2·sin, x2·cos + x1·sin].
 * x: [B, H, T, d]; tables broadcast over B and H.
 */
export function applyRotary(x: tf.Tensor4D, { cos, sin }: RotaryTables): tf.Tensor4D {
  return tf.tidy(() => {
    const half = x.shape[3] / 2;
    // Two slices rather than split: the wasm backend's SplitV copies its whole input per part.
    const x1 = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, half]); // [B, H, T, d/2]
    const x2 = tf.slice(x, [0, 0, 0, half], [-1, -1, -1, half]); // [B, H, T, d/2]
    return tf.concat([tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)), tf.add(tf.mul(x2, cos), tf.mul(x1, sin))], 3) as tf.Tensor4D;
  });
}
