import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEmbedder, type Embedder } from '../src/embedder.js';
import { NonFiniteWeightError, SafetensorsError } from '../src/errors.js';
import { convertWeights } from '../src/weights/convert.js';
import { readConfig } from '../src/weights/model-folder.js';
import { packedIndex, quantizeWeight } from '../src/weights/q8-codes.js';
import { openSafetensors, writeSafetensorsStream } from '../src/weights/safetensors-file.js';
import { projectionNames, q8ScalesName, runtimeNames } from '../src/weights/weight-table.js';
import { PORTABLE_BACKENDS } from './helpers/backend.js';
import { cosine, fixtureDir, reference } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const out = tempDir();
const fixture = 'nomic-tiny';
const q8Dir = join(out, 'q8');
const f32Dir = join(out, 'f32');

beforeAll(() => {
  convertWeights(fixtureDir(fixture), q8Dir, { dtype: 'q8' });
  convertWeights(fixtureDir(fixture), f32Dir, { dtype: 'float32' });
});

describe('a q8 checkpoint written by the converter', () => {
  it('holds each projection as packed int8 codes and float32 scales, the rest as float32', () => {
    const file = openSafetensors(join(q8Dir, 'model.safetensors'));
    try {
      expect(file.metadata.dtype).toBe('q8');
      const projections = projectionNames(readConfig(q8Dir).n_layer);
      const { q, down } = runtimeNames.layer(0);
      // [K, N] = [64, 64] for q and [F, 64] for down, as [N/8, K/2, 16].
      expect(file.tensors.get(q)).toMatchObject({ dtype: 'I8', shape: [8, 32, 16] });
      expect(file.tensors.get(q8ScalesName(q))).toMatchObject({ dtype: 'F32', shape: [64] });
      expect(file.tensors.get(down)?.shape[0]).toBe(8);
      for (const [name, info] of file.tensors) {
        const projection = projections.has(name);
        expect(info.dtype, name).toBe(projection ? 'I8' : 'F32');
        // One byte a weight: a projection's codes take a quarter of its float32 bytes.
        if (projection) expect(info.end - info.begin, name).toBe(info.shape.reduce((a, b) => a * b, 1));
      }
    } finally {
      file.close();
    }
  });

  it('stores the codes the load-time quantization makes, byte for byte', () => {
    const q8 = openSafetensors(join(q8Dir, 'model.safetensors'));
    const f32 = openSafetensors(join(f32Dir, 'model.safetensors'));
    try {
      const { gate } = runtimeNames.layer(1);
      const [K, N] = f32.tensors.get(gate)!.shape;
      const expected = quantizeWeight(f32.readFloat32(gate), K, N);
      const codes = new Int8Array(K * N);
      q8.readInt8Into(gate, codes);
      expect(codes).toEqual(expected.codes);
      expect(q8.readFloat32(q8ScalesName(gate))).toEqual(expected.scales);
    } finally {
      q8.close();
      f32.close();
    }
  });
});

describe.each(PORTABLE_BACKENDS)('a q8 checkpoint on %s', (backend) => {
  const texts = reference(fixture)
    .texts.filter((t) => backend !== 'cpu' || t.num_tokens <= 64)
    .map((t) => t.text);
  let fromQ8: Embedder;
  let quantizedAtLoad: Embedder;
  let fp32: Embedder;
  beforeAll(async () => {
    fromQ8 = await loadEmbedder(q8Dir, { backend, workers: 1, threads: 1, dtype: 'q8' });
    quantizedAtLoad = await loadEmbedder(f32Dir, { backend, workers: 1, threads: 1, dtype: 'q8' });
    fp32 = await loadEmbedder(f32Dir, { backend, workers: 1, threads: 1 });
  });
  afterAll(async () => {
    await Promise.all([fromQ8, quantizedAtLoad, fp32].map((e) => e?.dispose()));
  });

  it("with dtype q8 embeds exactly as quantizing the float32 checkpoint at load does", async () => {
    const a = (await fromQ8.embed(texts)).embeddings;
    const b = (await quantizedAtLoad.embed(texts)).embeddings;
    expect(fromQ8.dtype).toBe('q8');
    a.forEach((v, i) => expect(v, texts[i]).toEqual(b[i]));
  });

  it('with dtype fp32 computes in float32 with code · scale as the weights, close to the original', async () => {
    const dequantized = await loadEmbedder(q8Dir, { backend, workers: 1, threads: 1 });
    try {
      expect(dequantized.dtype).toBe('fp32');
      const a = (await dequantized.embed(texts)).embeddings;
      const exact = (await fp32.embed(texts)).embeddings;
      const cosines = a.map((v, i) => cosine(v, exact[i]));
      expect(Math.min(...cosines)).toBeGreaterThanOrEqual(0.995);
      // Not the original weights by another road: rounding to codes moves every text.
      expect(cosines.filter((c) => c === 1).length).toBeLessThan(texts.length / 2);
    } finally {
      await dequantized.dispose();
    }
  });
});

describe('a q8 checkpoint that is damaged', () => {
  /** A copy of the q8 fixture folder whose one tensor `edit` changes before it is written again. */
  function damaged(name: string, edit: (name: string, data: Float32Array | Int8Array) => Float32Array | Int8Array, dtypeOf?: (name: string, dtype: string) => string): string {
    const dir = join(out, `damaged-${name}`);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(q8Dir).filter((f) => f !== 'model.safetensors')) copyFileSync(join(q8Dir, f), join(dir, f));
    const source = openSafetensors(join(q8Dir, 'model.safetensors'));
    try {
      const infos = [...source.tensors.values()];
      const specs = infos.map((t) => ({ name: t.name, shape: t.shape, dtype: (dtypeOf?.(t.name, t.dtype) ?? t.dtype) as 'F32' | 'I8' }));
      const data = infos.map((t) => {
        const values = t.dtype === 'I8' ? new Int8Array(t.end - t.begin) : source.readFloat32(t.name);
        if (values instanceof Int8Array) source.readInt8Into(t.name, values);
        return edit(t.name, values);
      });
      writeSafetensorsStream(join(dir, 'model.safetensors'), specs, data, source.metadata);
    } finally {
      source.close();
    }
    return dir;
  }
  const { v } = runtimeNames.layer(1);

  it('names a NaN scale', async () => {
    const dir = damaged('nan-scale', (name, data) => {
      if (name === q8ScalesName(v)) (data as Float32Array)[5] = NaN;
      return data;
    });
    for (const dtype of ['q8', 'fp32'] as const) {
      const load = loadEmbedder(dir, { backend: 'wasm', workers: 1, dtype });
      await expect(load).rejects.toThrow(NonFiniteWeightError);
      await expect(load).rejects.toThrow(/layers\.1\.attn\.v\.scales/);
    }
  });

  it('names a negative scale', async () => {
    const dir = damaged('negative-scale', (name, data) => {
      if (name === q8ScalesName(v)) (data as Float32Array)[2] = -0.5;
      return data;
    });
    await expect(loadEmbedder(dir, { backend: 'wasm', workers: 1, dtype: 'q8' })).rejects.toThrow(/layers\.1\.attn\.v\.scales.*-0\.5 of column 2 is negative/);
  });

  it('refuses codes stored as another type, before reading any', async () => {
    const dir = damaged(
      'float-codes',
      (name, data) => (name === v ? new Float32Array(Array.from(data as Int8Array)) : data),
      (name, dtype) => (name === v ? 'F32' : dtype),
    );
    const load = loadEmbedder(dir, { backend: 'wasm', workers: 1, dtype: 'q8' });
    await expect(load).rejects.toThrow(SafetensorsError);
    await expect(load).rejects.toThrow(/layers\.1\.attn\.v.*stores this tensor as I8, not F32/);
  });
});

it('packs w(k, n) where the kernels read it', () => {
  // The layout q8 files share with the kernels: changing it makes old files wrong, so it bumps CONVERTED_FORMAT_VERSION.
  expect(packedIndex(0, 0, 64)).toBe(0);
  expect(packedIndex(1, 0, 64)).toBe(1);
  expect(packedIndex(0, 1, 64)).toBe(2);
  expect(packedIndex(2, 0, 64)).toBe(16);
  expect(packedIndex(0, 8, 64)).toBe(32 * 16);
});
