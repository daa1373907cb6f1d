import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadEmbedder } from '../src/embedder.js';
import { SafetensorsError } from '../src/errors.js';
import { convertWeights } from '../src/weights/convert.js';
import { CONVERTED_FORMAT_VERSION } from '../src/weights/load.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { useBackend } from './helpers/backend.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

/**
 * Float16 storage rounds every weight to 11 significant bits; on the fixtures
 * this moves embeddings by up to 5.8e-4. The bound stays 40× below the effect
 * of any architectural mistake the fixtures detect (0.04).
 */
const FLOAT16_EMBEDDING_TOLERANCE = 1e-3;

const out = tempDir();

describe.each(FIXTURE_NAMES)('converted weights of %s', (fixture) => {
  beforeAll(() => useBackend('wasm'));
  const texts = reference(fixture).texts;

  it('float32: writes the runtime layout with its metadata and matches the reference', async () => {
    const dir = join(out, `${fixture}-f32`);
    const { tensors } = convertWeights(fixtureDir(fixture), dir, { dtype: 'float32' });
    const file = openSafetensors(join(dir, 'model.safetensors'));
    expect(file.metadata).toEqual({ format: 'nomic-embed-tfjs', format_version: CONVERTED_FORMAT_VERSION, source: fixture, dtype: 'F32' });
    expect(file.tensors.get('layers.0.attn.q')?.shape).toEqual([64, 64]);
    expect(file.tensors.size).toBe(tensors);
    file.close();
    expect(existsSync(join(dir, 'tokenizer.json'))).toBe(true);
    const embedder = await loadEmbedder(dir, { backend: 'wasm', workers: 1 });
    const { embeddings } = await embedder.embed(texts.map((t) => t.text));
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    embedder.dispose();
  });

  it(`float16: half the size, embeddings within ${FLOAT16_EMBEDDING_TOLERANCE}`, async () => {
    const dir = join(out, `${fixture}-f16`);
    convertWeights(fixtureDir(fixture), dir, { dtype: 'float16' });
    const file = openSafetensors(join(dir, 'model.safetensors'));
    expect(file.metadata.dtype).toBe('F16');
    expect([...file.tensors.values()].every((t) => t.dtype === 'F16')).toBe(true);
    file.close();
    const embedder = await loadEmbedder(dir, { backend: 'wasm', workers: 1 });
    const { embeddings } = await embedder.embed(texts.map((t) => t.text));
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, FLOAT16_EMBEDDING_TOLERANCE, t.name));
    embedder.dispose();
  });
});

describe('conversion errors', () => {
  it('refuses to convert a converted folder', () => {
    const dir = join(out, 'twice');
    convertWeights(fixtureDir('nomic-tiny'), dir);
    expect(() => convertWeights(dir, join(out, 'thrice'))).toThrow(/already converted/);
  });

  it('refuses weights that overflow float16, naming the tensor', () => {
    const dir = join(out, 'huge');
    mkdirSync(dir);
    copyFileSync(join(fixtureDir('nomic-tiny'), 'config.json'), join(dir, 'config.json'));
    const file = openSafetensors(join(fixtureDir('nomic-tiny'), 'model.safetensors'));
    const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: file.readFloat32(t.name) }));
    file.close();
    tensors.find((t) => t.name === 'emb_ln.weight')!.data[0] = 1e6;
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    expect(() => convertWeights(dir, join(out, 'huge-f16'), { dtype: 'float16' })).toThrow(/emb_ln\.weight.*does not fit in float16/);
    expect(existsSync(join(out, 'huge-f16', 'model.safetensors'))).toBe(false);
  });

  it('tells what to re-run when a converted file has an old format version', () => {
    const dir = join(out, 'old');
    mkdirSync(dir);
    copyFileSync(join(fixtureDir('nomic-tiny'), 'config.json'), join(dir, 'config.json'));
    writeSafetensors(join(dir, 'model.safetensors'), [], { format: 'nomic-embed-tfjs', format_version: '0' });
    expect(() => convertWeights(dir, join(out, 'old-out'))).toThrow(SafetensorsError);
    expect(() => convertWeights(dir, join(out, 'old-out'))).toThrow(/format version 0.*npm run convert/);
  });
});
