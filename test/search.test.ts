import { describe, expect, it } from 'vitest';
import { quantize } from '../src/pipeline/quantize.js';
import { cosineTopK, hammingTopK } from '../src/search/top-k.js';

/** A deterministic pseudo-random generator, so failures reproduce. */
function random(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1664525 + 1013904223) % 2 ** 32;
    return state / 2 ** 32 - 0.5;
  };
}

const vectors = (n: number, d: number, seed: number) => {
  const next = random(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: d }, next));
};

/** Brute force: every row scored, sorted best first, ties by index. */
function bruteCosine(query: Float32Array, corpus: Float32Array[]) {
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return corpus
    .map((row, index) => ({ index, score: row.reduce((s, x, i) => s + x * query[i], 0) / (norm(row) * norm(query) || Infinity) }))
    .sort((a, b) => b.score - a.score || a.index - b.index);
}

function bruteHamming(query: Uint8Array, corpus: Uint8Array[]) {
  const bits = (x: number) => x.toString(2).split('').filter((c) => c === '1').length;
  return corpus
    .map((row, index) => ({ index, distance: row.reduce((s, x, i) => s + bits(x ^ query[i]), 0) }))
    .sort((a, b) => a.distance - b.distance || a.index - b.index);
}

describe('top-k search', () => {
  const corpus = vectors(500, 48, 1);
  const query = vectors(1, 48, 2)[0];

  it.each([1, 10, 499, 500, 2000])('cosine top %i equals brute force, for arrays and for one matrix', (k) => {
    const expected = bruteCosine(query, corpus).slice(0, k);
    const fromArrays = cosineTopK(query, corpus, k);
    expect(fromArrays.map((s) => s.index)).toEqual(expected.map((s) => s.index));
    fromArrays.forEach((s, i) => expect(s.score).toBeCloseTo(expected[i].score, 6));
    const matrix = new Float32Array(500 * 48);
    corpus.forEach((row, i) => matrix.set(row, i * 48));
    expect(cosineTopK(query, { data: matrix, dimensions: 48 }, k)).toEqual(fromArrays);
  });

  it('breaks ties by index and scores a zero vector 0', () => {
    const twin = Float32Array.of(1, 2, 3);
    const result = cosineTopK(Float32Array.of(1, 2, 3), [Float32Array.of(0, 0, 0), twin, Float32Array.of(2, 4, 6), twin], 4);
    expect(result.map((s) => s.index)).toEqual([1, 2, 3, 0]);
    expect(result[3].score).toBe(0);
  });

  it.each([1, 10, 500, 2000])('Hamming top %i equals brute force, for ubinary and binary alike', (k) => {
    const packed = corpus.map((v) => quantize(v, 'ubinary'));
    const q = quantize(query, 'ubinary');
    const expected = bruteHamming(q, packed).slice(0, k);
    expect(hammingTopK(q, packed, k)).toEqual(expected);
    const signed = corpus.map((v) => quantize(v, 'binary'));
    expect(hammingTopK(quantize(query, 'binary'), signed, k)).toEqual(expected);
    const matrix = new Uint8Array(packed.length * 6);
    packed.forEach((row, i) => matrix.set(row, i * 6));
    expect(hammingTopK(q, { data: matrix, dimensions: 6 }, k)).toEqual(expected);
  });

  it('refuses a corpus of another width, and a k below one', () => {
    expect(() => cosineTopK(query, [new Float32Array(3)], 1)).toThrow(/corpus\[0\] has 3 values, the query 48/);
    expect(() => cosineTopK(query, { data: new Float32Array(100), dimensions: 48 }, 1)).toThrow(/not a whole number of rows/);
    expect(() => cosineTopK(query, corpus, 0)).toThrow(/k must be a positive integer/);
  });
});
