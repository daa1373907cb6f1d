import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { copySlice, installWasmSlice, WASM_SLICE_FOR_VERSION } from '../src/backends/wasm-slice.js';
import { useBackend } from './helpers/backend.js';

/** Reference slicing by index arithmetic, independent of any kernel. */
function naiveSlice(values: Float32Array, shape: number[], begin: number[], size: number[]): number[] {
  const out: number[] = [];
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const visit = (d: number, offset: number) => {
    if (d === shape.length) return void out.push(values[offset]);
    for (let i = 0; i < size[d]; i++) visit(d + 1, offset + (begin[d] + i) * strides[d]);
  };
  visit(0, 0);
  return out;
}

const CASES: [number[], number[], number[]][] = [
  [[10], [3], [4]],
  [[6, 8], [2, 0], [3, 8]],
  [[6, 8], [1, 3], [4, 2]],
  [[4, 5, 6], [1, 0, 0], [2, 5, 6]],
  [[4, 5, 6], [0, 2, 1], [4, 3, 5]],
  [[3, 4, 5, 6], [1, 1, 0, 3], [2, 3, 5, 3]],
  [[3, 4, 5, 6], [0, 0, 0, 0], [3, 4, 5, 6]],
  [[2, 3, 2, 3, 4], [1, 0, 1, 1, 2], [1, 3, 1, 2, 2]],
];

describe('the wasm Slice kernel that reads through a heap view', () => {
  beforeAll(() => useBackend('wasm'));

  it.each(CASES)('slices %j at %j by %j like index arithmetic', (shape, begin, size) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Float32Array.from({ length: n }, (_, i) => i * 1.5 - 7);
    const expected = naiveSlice(values, shape, begin, size);
    const copied = new Float32Array(expected.length);
    copySlice(values, shape, begin, size, copied);
    expect(Array.from(copied)).toEqual(expected);
    const viaKernel = tf.tidy(() => tf.slice(tf.tensor(values, shape), begin, size).dataSync());
    expect(Array.from(viaKernel)).toEqual(expected);
  });

  it('slices int32 tensors and keeps their dtype', () => {
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32');
    const s = tf.slice(x, [1, 0], [2, 1]);
    expect(s.dtype).toBe('int32');
    expect(Array.from(s.dataSync())).toEqual([3, 5]);
    tf.dispose([x, s]);
  });

  it('is installed for the tfjs-backend-wasm version it was written for, and refuses any other', () => {
    const shipped = tf.getKernel('Slice', 'wasm');
    expect(installWasmSlice(version_wasm)).toBeUndefined();
    expect(version_wasm).toBe(WASM_SLICE_FOR_VERSION);
    const refusal = installWasmSlice('4.23.0');
    expect(refusal).toMatch(/tfjs-backend-wasm 4\.23\.0 is not 4\.22\.0.*its own kernel stays/);
    expect(tf.getKernel('Slice', 'wasm')).toBe(shipped);
  });

  it('still slices strings through the original kernel', () => {
    const x = tf.tensor1d(['a', 'b', 'c']);
    const s = tf.slice(x, [1], [2]);
    expect(s.arraySync()).toEqual(['b', 'c']);
    tf.dispose([x, s]);
  });
});
