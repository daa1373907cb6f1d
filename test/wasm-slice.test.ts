import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { installWasmGather } from '../src/backends/wasm-gather.js';
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

describe('the wasm GatherV2 kernel that copies whole rows', () => {
  beforeAll(() => useBackend('wasm'));

  it('is installed on this release', () => {
    expect(installWasmGather(version_wasm)).toBeUndefined();
  });

  it.each([
    [[10, 4], [3, 0, 9, 3]],
    [[1, 7], [0, 0, 0]],
    [[5, 3], []],
  ])('gathers rows of a %j matrix as index arithmetic does, for ids %j, float32 and int32', (shape, ids) => {
    const values = Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => i * 1.5 - 7);
    const naive = ids.flatMap((id) => Array.from(values.slice(id * shape[1], (id + 1) * shape[1])));
    for (const dtype of ['float32', 'int32'] as const) {
      const got = tf.tidy(() => tf.gather(tf.tensor2d(values, shape as [number, number], dtype), tf.tensor1d(ids, 'int32')));
      expect(got.shape).toEqual([ids.length, shape[1]]);
      expect(Array.from(got.dataSync())).toEqual(dtype === 'int32' ? naive.map(Math.trunc) : naive);
      got.dispose();
    }
  });

  it('keeps [B, T] ids as [B, T, D], and leaves other gathers to the original kernel', () => {
    const table = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const ids = tf.tensor2d([2, 0, 1, 1], [2, 2], 'int32');
    expect(tf.gather(table, ids).arraySync()).toEqual([[[5, 6], [1, 2]], [[3, 4], [3, 4]]]);
    // Along the second axis, and from a 3-D tensor: the shipped kernel's cases.
    expect(tf.gather(table, tf.tensor1d([1, 0], 'int32'), 1).arraySync()).toEqual([[2, 1], [4, 3], [6, 5]]);
    expect(tf.gather(tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]), tf.tensor1d([1], 'int32')).arraySync()).toEqual([[[5, 6], [7, 8]]]);
  });

  it('refuses an index out of range, as tfjs does', () => {
    const table = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    expect(() => tf.gather(table, tf.tensor1d([0, 2], 'int32'))).toThrow(/GatherV2: the index value 2 is not in \[0, 1\]/);
    expect(() => tf.gather(table, tf.tensor1d([-1], 'int32'))).toThrow(/the index value -1 is not in \[0, 1\]/);
  });
});
