import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { InputError } from '../src/errors.js';
import { quantize, rangesOf, unitVectorRanges } from '../src/pipeline/quantize.js';
import { cosineTopK, hammingTopK } from '../src/search/top-k.js';
import { fixtureDir, reference } from './helpers/fixtures.js';

const f32 = (...values: number[]) => Float32Array.from(values);

describe('quantization, as sentence-transformers quantize_embeddings', () => {
  const ranges = { min: [-1, 0], max: [1, 255] };

  it('maps int8 and uint8 linearly over the range, truncating toward zero as numpy astype does', () => {
    // Steps: 2/255 and 1. 0 sits 127.5 steps up: uint8 127, int8 trunc(-0.5) = 0.
    expect(Array.from(quantize(f32(0, 100), 'uint8', ranges))).toEqual([127, 100]);
    expect(Array.from(quantize(f32(0, 100), 'int8', ranges))).toEqual([0, -28]);
    // 100.75 steps: uint8 100; int8 trunc(-27.25) = -27, toward zero, not down.
    expect(Array.from(quantize(f32(0, 100.75), 'uint8', ranges))).toEqual([127, 100]);
    expect(Array.from(quantize(f32(0, 100.75), 'int8', ranges))).toEqual([0, -27]);
    // The ends of the range: the lowest and highest codes.
    expect(Array.from(quantize(f32(-1, 0), 'int8', ranges))).toEqual([-128, -128]);
    expect(Array.from(quantize(f32(1, 255), 'int8', ranges))).toEqual([127, 127]);
    expect(Array.from(quantize(f32(1, 255), 'uint8', ranges))).toEqual([255, 255]);
  });

  it('clips values outside the range to its ends', () => {
    expect(Array.from(quantize(f32(-7, 900), 'int8', ranges))).toEqual([-128, 127]);
    expect(Array.from(quantize(f32(-7, 900), 'uint8', ranges))).toEqual([0, 255]);
  });

  it('packs binary bits most significant first, 1 only above zero, padding a last partial byte', () => {
    const v = f32(1, -1, 0.5, -0.0, 0, -2, -3, 1e-30, 2, 0);
    // 1 0 1 0 0 0 0 1 | 1 0 (000000): 161 and 128.
    expect(Array.from(quantize(v, 'ubinary'))).toEqual([161, 128]);
    expect(Array.from(quantize(v, 'binary'))).toEqual([33, 0]);
    expect(quantize(new Float32Array(10), 'binary').byteLength).toBe(2);
    expect(quantize(new Float32Array(10), 'int8', unitVectorRanges(10)).byteLength).toBe(10);
  });

  it('calibrates ranges from vectors and defaults unit vectors to ±4/√D', () => {
    expect(rangesOf([f32(1, -2), f32(-3, 5), f32(0, 0)])).toEqual({ min: f32(-3, -2), max: f32(1, 5) });
    const unit = unitVectorRanges(64);
    expect(unit.min[0]).toBeCloseTo(-0.5, 7);
    expect(unit.max[63]).toBeCloseTo(0.5, 7);
  });
});

describe('quantized embed', () => {
  let embedder: Embedder;
  const texts = reference('nomic-tiny').texts.map((t) => t.text);
  beforeAll(async () => {
    embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1 });
  });
  afterAll(() => embedder.dispose());

  it('quantizes what float32 gives, Matryoshka size first', async () => {
    const float = await embedder.embed(texts, { dimensions: 32 });
    const binary = await embedder.embed(texts, { dimensions: 32, precision: 'binary' });
    expect(binary.precision).toBe('binary');
    expect(binary.dimensions).toBe(32);
    binary.embeddings.forEach((v, i) => {
      expect(v).toBeInstanceOf(Int8Array);
      expect(v.length).toBe(4);
      expect(Array.from(v)).toEqual(Array.from(quantize(float.embeddings[i], 'binary')));
    });
    const uint8 = await embedder.embed(texts, { precision: 'uint8' });
    expect(uint8.ranges).toEqual(unitVectorRanges(64));
    const full = await embedder.embed(texts);
    uint8.embeddings.forEach((v, i) => {
      expect(v).toBeInstanceOf(Uint8Array);
      expect(Array.from(v)).toEqual(Array.from(quantize(full.embeddings[i], 'uint8', uint8.ranges)));
    });
  });

  it('calibrates int8 ranges from texts and says which it used', async () => {
    const calibration = texts.slice(0, 6);
    const result = await embedder.embed(texts, { precision: 'int8', calibration, task: 'clustering' });
    const expected = rangesOf((await embedder.embed(calibration, { task: 'clustering' })).embeddings);
    expect(result.ranges).toEqual(expected);
    const again = await embedder.embed(texts, { precision: 'int8', ranges: result.ranges, task: 'clustering' });
    expect(again.embeddings).toEqual(result.embeddings);
  });

  it.each([
    [{ precision: 'int4' }, /unknown precision "int4"/],
    [{ precision: 'int8', ranges: { min: [0], max: [1] } }, /ranges\.min: must hold one value per dimension \(64\)/],
    [{ precision: 'uint8', normalize: false }, /uint8 of vectors that are not normalised needs ranges or calibration texts/],
    [{ precision: 'int8', calibration: [] }, /calibration: must be a non-empty array of texts/],
  ])('refuses %j', async (options, message) => {
    const error = await embedder.embed(texts, options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(message);
  });

  it('keeps the order of cosine similarity in Hamming distance on most pairs', async () => {
    const { embeddings: float } = await embedder.embed(texts);
    const { embeddings: bits } = await embedder.embed(texts, { precision: 'ubinary' });
    let agree = 0;
    let pairs = 0;
    for (let q = 0; q < texts.length; q++) {
      const cos = new Map(cosineTopK(float[q], float, texts.length).map((s) => [s.index, s.score]));
      const ham = new Map(hammingTopK(bits[q], bits, texts.length).map((r) => [r.index, r.distance]));
      for (let a = 0; a < texts.length; a++) {
        for (let b = a + 1; b < texts.length; b++) {
          if (a === q || b === q || ham.get(a) === ham.get(b)) continue;
          pairs++;
          if (Math.sign(cos.get(a)! - cos.get(b)!) === Math.sign(ham.get(b)! - ham.get(a)!)) agree++;
        }
      }
    }
    const agreement = agree / pairs;
    console.info(`binary Hamming order agrees with cosine on ${(agreement * 100).toFixed(1)}% of ${pairs} pairs`);
    expect(agreement).toBeGreaterThan(0.75);
  });
});
