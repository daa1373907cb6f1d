/**
 * Quantized embeddings with the semantics of sentence-transformers'
 * `quantize_embeddings`, so vectors interoperate with tools that expect them:
 *
 * - `int8` / `uint8`: each dimension mapped linearly from its range
 *   [min, max] onto 256 steps, `trunc((x − min) / step)` (minus 128 for
 *   int8), truncating as numpy's `astype` does. Values outside the range are
 *   clipped to its ends (sentence-transformers lets them wrap around).
 * - `binary` / `ubinary`: one bit per dimension, 1 where the value is > 0,
 *   packed 8 per byte, most significant bit first (numpy's `packbits`; a last
 *   partial byte is padded with zeros); `binary` is the packed byte minus 128
 *   as int8.
 */
export const PRECISIONS = ['float32', 'int8', 'uint8', 'binary', 'ubinary'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** The typed array each precision gives. */
export type VectorOf<P extends Precision> = P extends 'float32' ? Float32Array : P extends 'int8' | 'binary' ? Int8Array : Uint8Array;

/** Per-dimension ranges for int8 and uint8: `min[i]` maps to the lowest code, `max[i]` to the highest. */
export interface QuantizationRanges {
  readonly min: ArrayLike<number>;
  readonly max: ArrayLike<number>;
}

/**
 * Ranges for unit vectors when neither ranges nor calibration texts are
 * given: ±4/√D in every dimension. A component of a D-dimensional unit vector
 * has a standard deviation near 1/√D, so this range holds all but a few in
 * ten thousand of them (those few are clipped) while keeping the steps fine.
 */
export function unitVectorRanges(dimensions: number): QuantizationRanges {
  const bound = 4 / Math.sqrt(dimensions);
  return { min: new Float32Array(dimensions).fill(-bound), max: new Float32Array(dimensions).fill(bound) };
}

/** Per-dimension minimum and maximum of a set of vectors (the calibration of sentence-transformers). */
export function rangesOf(vectors: readonly ArrayLike<number>[]): QuantizationRanges {
  const D = vectors[0]?.length ?? 0;
  const min = new Float32Array(D).fill(Infinity);
  const max = new Float32Array(D).fill(-Infinity);
  for (const v of vectors) {
    for (let i = 0; i < D; i++) {
      if (v[i] < min[i]) min[i] = v[i];
      if (v[i] > max[i]) max[i] = v[i];
    }
  }
  return { min, max };
}

/** One vector at a precision; `ranges` is needed for int8 and uint8. */
export function quantize<P extends Precision>(vector: Float32Array, precision: P, ranges?: QuantizationRanges): VectorOf<P> {
  switch (precision) {
    case 'float32':
      return vector as VectorOf<P>;
    case 'int8':
    case 'uint8': {
      if (ranges === undefined) throw new Error(`${precision} needs ranges`);
      const out = precision === 'int8' ? new Int8Array(vector.length) : new Uint8Array(vector.length);
      const offset = precision === 'int8' ? 128 : 0;
      for (let i = 0; i < vector.length; i++) {
        const step = (ranges.max[i] - ranges.min[i]) / 255;
        // A dimension whose range is a single value maps everything to its lowest code.
        const code = step > 0 ? Math.trunc((vector[i] - ranges.min[i]) / step - offset) : -offset;
        out[i] = Math.min(255 - offset, Math.max(-offset, code));
      }
      return out as VectorOf<P>;
    }
    case 'binary':
    case 'ubinary': {
      const packed = new Uint8Array(Math.ceil(vector.length / 8));
      for (let i = 0; i < vector.length; i++) if (vector[i] > 0) packed[i >> 3] |= 0x80 >> (i & 7);
      if (precision === 'ubinary') return packed as VectorOf<P>;
      const signed = new Int8Array(packed.length);
      for (let i = 0; i < packed.length; i++) signed[i] = packed[i] - 128;
      return signed as VectorOf<P>;
    }
    default: {
      const unknown: never = precision;
      throw new Error(`unknown precision ${String(unknown)}`);
    }
  }
}
