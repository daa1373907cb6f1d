import { FUSED_MAX_LENGTH } from '../src/backends/policy.js';
import * as tf from '@tensorflow/tfjs-core';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { InputError, ModelFilesError, OutOfMemoryError, TextTooLongError } from '../src/errors.js';
import type { EncoderInputs, ForwardOptions } from '../src/model/nomic-bert.js';
import { TextTokenizer } from '../src/pipeline/tokenizer.js';
import { readTokenizerFiles } from '../src/weights/model-folder.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

describe('tokenizer', () => {
  it.each(FIXTURE_NAMES)('gives the fixture ids exactly (%s)', (fixture) => {
    const tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir(fixture)), 8192);
    for (const [i, t] of reference(fixture).texts.entries()) {
      expect(Array.from(tokenizer.encode(t.text, undefined, 'truncate', i).ids), t.name).toEqual(t.input_ids);
    }
  });

  it('uses n_positions, not 512, as the maximum length when the folder sets none', () => {
    expect(TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192).maxLength).toBe(8192);
    expect(TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192, 100).maxLength).toBe(100);
  });

  it('takes model_max_length from tokenizer_config.json, ignoring the unset sentinel', () => {
    const dir = join(tempDir(), 'with-config');
    mkdirSync(dir);
    copyFileSync(join(fixtureDir('nomic-tiny'), 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 512 }));
    expect(TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192).maxLength).toBe(512);
    expect(TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192, 2048).maxLength).toBe(2048);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 1e30 }));
    expect(TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192).maxLength).toBe(8192);
    writeFileSync(join(dir, 'tokenizer_config.json'), '{ not json');
    expect(() => TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192)).toThrow(/tokenizer_config\.json: not valid JSON/);
  });

  it('truncates keeping [SEP], or refuses when asked', () => {
    const tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192, 8);
    const long = reference('nomic-tiny').texts.find((t) => t.name === 'long_paragraph')!;
    const cut = tokenizer.encode(long.text, undefined, 'truncate', 0);
    expect(Array.from(cut.ids)).toEqual([...long.input_ids.slice(0, 7), 102]);
    expect(cut.truncatedTokens).toBeGreaterThan(0);
    expect(() => tokenizer.encode(long.text, undefined, 'error', 5)).toThrow(TextTooLongError);
    // Only an opening of the text was tokenized: the count is a lower bound, and says so.
    expect(() => tokenizer.encode(long.text, undefined, 'error', 5)).toThrow(/texts\[5\] has at least \d+ tokens, more than the maximum of 8/);
    const roomy = TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192, 380);
    expect(() => roomy.encode(long.text, undefined, 'error', 5)).toThrow(/texts\[5\] has 381 tokens/);
  });

  it('tokenizes only an opening of a huge text, with the ids of the whole', () => {
    const tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192, 64);
    const inner = (tokenizer as unknown as { tokenizer: { encode(text: string): { ids: number[] } } }).tokenizer;
    const long = reference('nomic-tiny').texts.find((t) => t.name === 'long_paragraph')!;
    const huge = `${long.text} `.repeat(2000);
    const whole = inner.encode(`search_document: ${huge}`).ids;
    const seen: number[] = [];
    const encode = inner.encode.bind(inner);
    inner.encode = (text: string) => {
      seen.push(text.length);
      return encode(text);
    };
    const cut = tokenizer.encode(huge, 'search_document', 'truncate', 0);
    expect(Array.from(cut.ids)).toEqual([...whole.slice(0, 63), 102]);
    expect(cut.ids.length).toBe(64);
    expect(cut.truncatedTokens).toBeGreaterThan(0);
    expect(cut.exact).toBe(false);
    // Nothing near the text's size went through the tokenizer.
    expect(Math.max(...seen.slice(0, -1))).toBeLessThan(huge.length / 100);
    expect(whole.length).toBeGreaterThan(700_000 / 4);
  });

  it('refuses a fractional or tiny model_max_length, which would lose the final [SEP]', () => {
    const dir = join(tempDir(), 'fractional');
    mkdirSync(dir);
    copyFileSync(join(fixtureDir('nomic-tiny'), 'tokenizer.json'), join(dir, 'tokenizer.json'));
    for (const bad of [100.5, 1, '512']) {
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: bad }));
      expect(() => TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192)).toThrow(ModelFilesError);
      expect(() => TextTokenizer.fromFiles(readTokenizerFiles(dir), 8192)).toThrow(/tokenizer_config\.json: model_max_length .* is not an integer of at least 2/);
    }
  });

  it('adds Nomic task prefixes', () => {
    const tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(fixtureDir('nomic-tiny')), 8192);
    const prefixed = reference('nomic-tiny').texts.find((t) => t.name === 'query_prefix')!;
    const bare = prefixed.text.replace(/^search_query: /, '');
    expect(Array.from(tokenizer.encode(bare, 'search_query', 'truncate', 0).ids)).toEqual(prefixed.input_ids);
  });
});

describe.each(FIXTURE_NAMES)('embedding pipeline on %s', (fixture) => {
  let embedder: Embedder;
  const texts = reference(fixture).texts;
  const raw = texts.map((t) => t.text);
  const realDims = reference(fixture).pooling.matryoshka_dims;

  beforeAll(async () => {
    embedder = await loadEmbedder(fixtureDir(fixture), { backend: 'wasm', workers: 1 });
  });
  afterAll(() => embedder.dispose());

  it('reports its backend', () => {
    expect(embedder.backend).toBe('wasm');
  });

  it('matches the reference embeddings from raw text', async () => {
    const { embeddings, dimensions } = await embedder.embed(raw);
    expect(dimensions).toBe(64);
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, `${t.name} embedding`));
  });

  it('returns the mean-pooled vector with normalize: false', async () => {
    const { embeddings } = await embedder.embed(raw, { normalize: false });
    texts.forEach((t, i) => expectClose(embeddings[i], t.mean_pooled, TOLERANCE.meanPooled, `${t.name} mean_pooled`));
  });

  it.each(realDims)('matches the reference Matryoshka vectors at %i dimensions', async (dims) => {
    const { embeddings } = await embedder.embed(raw, { dimensions: dims });
    texts.forEach((t, i) => {
      expect(embeddings[i].length).toBe(dims);
      expectClose(embeddings[i], t.matryoshka[String(dims)], TOLERANCE.embedding, `${t.name} matryoshka[${dims}]`);
    });
  });

  const limits: [string, object][] = [
    ['one text per batch', { maxBatchSize: 1 }],
    ['everything in one batch', { maxBatchTokens: 1e9, maxBatchSize: 1000 }],
    ['a tight token budget', { maxBatchTokens: 400 }],
    ['chunks of three texts', { chunkSize: 3, maxBatchSize: 2 }],
  ];
  it.each(limits)('gives the same vectors in input order with %s', async (_, options) => {
    const { embeddings, stats } = await embedder.embed(raw, options);
    texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    expect(stats.texts).toBe(texts.length);
  });

  it('gives the same vectors whatever the input order', async () => {
    const order = raw.map((_, i) => i).sort((a, b) => (a * 7) % 16 - (b * 7) % 16);
    const { embeddings } = await embedder.embed(order.map((i) => raw[i]), { maxBatchSize: 5 });
    order.forEach((textIndex, position) =>
      expectClose(embeddings[position], texts[textIndex].embedding, TOLERANCE.embedding, texts[textIndex].name),
    );
  });
});

describe('embedding pipeline behaviour', () => {
  let embedder: Embedder;
  const texts = reference('nomic-tiny').texts;
  const raw = texts.map((t) => t.text);
  let forward: Embedder['model']['forward'];

  beforeAll(async () => {
    embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1 });
    forward = embedder.model.forward.bind(embedder.model);
  });
  afterAll(() => embedder.dispose());

  /** Makes the forward pass fail like an exhausted backend for batches above `size`. */
  function failAbove(size: number, message = 'OOM when allocating tensor with shape[64,12,512,512]') {
    const sizes: number[] = [];
    embedder.model.forward = (inputs: EncoderInputs, options?: ForwardOptions) => {
      sizes.push(inputs.inputIds.shape[0]);
      // Allocate first, as a real failure would, to prove that the tensors are freed.
      const partial = tf.ones([inputs.inputIds.shape[0], 64]);
      if (inputs.inputIds.shape[0] > size) throw new Error(message);
      partial.dispose();
      return forward(inputs, options);
    };
    return sizes;
  }
  const restore = () => (embedder.model.forward = forward);

  it('counts real and padded tokens', async () => {
    const { stats } = await embedder.embed(raw);
    expect(stats.tokens).toBe(texts.reduce((sum, t) => sum + t.num_tokens, 0));
    expect(stats.batches).toBeGreaterThan(0);
    expect(stats.backend).toBe('wasm');
    expect(stats.estimatedPeakBytes).toBeGreaterThan(0);
    expect(stats.measuredPeakBytes).toBeGreaterThan(0);
    expect(stats.tokensPerSecond).toBeGreaterThan(0);
  });

  it('computes the padding ratio of a hand-made case', async () => {
    // 'hello' has 6 tokens and 'empty' 2: one batch of 2 × 6 positions, 8 of them real.
    const pair = ['hello', 'empty'].map((name) => texts.find((t) => t.name === name)!);
    const { stats } = await embedder.embed(pair.map((t) => t.text));
    expect(stats).toMatchObject({ tokens: 8, paddedTokens: 12, batches: 1, retries: 0 });
    expect(stats.paddingRatio).toBeCloseTo(4 / 12, 12);
  });

  it('returns an empty result for no texts without running the model', async () => {
    const sizes = failAbove(-1, 'must not run');
    try {
      const result = await embedder.embed([]);
      expect(result.embeddings).toEqual([]);
      expect(result.stats.batches).toBe(0);
      expect(sizes).toEqual([]);
    } finally {
      restore();
    }
  });

  it('backs off on out-of-memory, keeps the smaller size, and loses nothing', async () => {
    const before = tf.memory().numTensors;
    const sizes = failAbove(3);
    let progress = 0;
    try {
      // The texts that share a kernel (the longer ones run apart), with a token budget that lets 16 share a batch,
      // so that the first batch fails.
      const within = texts.filter((t) => t.num_tokens <= FUSED_MAX_LENGTH);
      const { embeddings, stats } = await embedder.embed(
        within.map((t) => t.text),
        { maxBatchSize: 16, maxBatchTokens: 8192, onProgress: (done) => (progress = done) },
      );
      within.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.retries).toBeGreaterThan(0);
      expect(stats.batches).toBe(Math.ceil(within.length / 2));
      expect(progress).toBe(within.length);
      // All of them (15) fail, then 8 and 4 fail; the cap of 2 then holds for the rest.
      expect(within.length).toBe(15);
      expect(sizes.slice(0, 4)).toEqual([15, 8, 4, 2]);
      expect(sizes.slice(4).every((s) => s <= 2)).toBe(true);
    } finally {
      restore();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names the text that does not fit even alone', async () => {
    const before = tf.memory().numTensors;
    failAbove(0);
    try {
      const error = await embedder.embed(raw).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OutOfMemoryError);
      // Longest first: the 381-token paragraph is the first to run alone.
      expect((error as OutOfMemoryError).index).toBe(texts.findIndex((t) => t.name === 'long_paragraph'));
    } finally {
      restore();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('does not retry errors other than out-of-memory', async () => {
    const sizes = failAbove(0, 'something else broke');
    try {
      await expect(embedder.embed(raw)).rejects.toThrow('something else broke');
      expect(sizes).toHaveLength(1);
    } finally {
      restore();
    }
  });

  it('leaks no tensor', async () => {
    await embedder.embed(raw.slice(0, 3));
    const before = tf.memory().numTensors;
    await embedder.embed(raw, { dimensions: 32 });
    await embedder.embed(raw, { normalize: false, pooling: 'cls' });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('counts truncated texts', async () => {
    const small = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, maxLength: 16 });
    try {
      const { stats, embeddings } = await small.embed(raw);
      expect(stats.truncatedTexts).toBe(texts.filter((t) => t.num_tokens > 16).length);
      expect(embeddings.every((e) => e.length === 64)).toBe(true);
      await expect(small.embed(raw, { truncation: 'error' })).rejects.toThrow(TextTooLongError);
    } finally {
      small.dispose();
    }
  });

  it.each([
    ['not an array', 'hello', /texts: must be an array/],
    ['a non-string element', ['a', 3, 'b'], /texts\[1\]: must be a string, got number 3/],
  ])('rejects texts that are %s', async (_, input, message) => {
    await expect(embedder.embed(input as string[])).rejects.toThrow(message);
    await expect(embedder.embed(input as string[])).rejects.toBeInstanceOf(InputError);
  });

  it.each([
    [{ dimensions: 65 }, /dimensions: number 65 is not available; use an integer from 1 to 64/],
    [{ dimensions: 2.5 }, /dimensions/],
    [{ task: 'search' }, /unknown task "search"/],
    [{ maxBatchSize: 0 }, /maxBatchSize: must be an integer of at least 1/],
    [{ batchSize: 4 }, /unknown option "batchSize"/],
  ])('rejects the option %j', async (options, message) => {
    await expect(embedder.embed(raw, options as object)).rejects.toThrow(message);
  });

  it('rejects a model folder without tokenizer files, leaving nothing loaded', async () => {
    const dir = join(tempDir(), 'no-tokenizer');
    mkdirSync(dir);
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(fixtureDir('nomic-tiny'), f), join(dir, f));
    const before = tf.memory().numTensors;
    await expect(loadEmbedder(dir, { backend: 'wasm', workers: 1 })).rejects.toThrow(ModelFilesError);
    await expect(loadEmbedder(dir, { backend: 'wasm', workers: 1 })).rejects.toThrow(/tokenizer\.json not found/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects unknown load options', async () => {
    await expect(loadEmbedder(fixtureDir('nomic-tiny'), { backnd: 'wasm' } as object)).rejects.toThrow(/unknown option "backnd"/);
  });

  it('embeds with a task prefix as if the prefix were typed', async () => {
    const prefixed = texts.find((t) => t.name === 'query_prefix')!;
    const { embeddings } = await embedder.embed([prefixed.text.replace(/^search_query: /, '')], { task: 'search_query' });
    expectClose(embeddings[0], prefixed.embedding, TOLERANCE.embedding, 'query with task prefix');
  });
});

describe('rotaryScalingFactor load option', () => {
  it('overrides the config: off, the NTK fixture matches its reference only where scaling never applies', async () => {
    const texts = reference('nomic-tiny-ntk').texts;
    const plain = await loadEmbedder(fixtureDir('nomic-tiny-ntk'), { backend: 'wasm', workers: 1, rotaryScalingFactor: null });
    try {
      const { embeddings } = await plain.embed(texts.map((t) => t.text));
      for (const [i, t] of texts.entries()) {
        if (t.ntk_scaling_active) {
          const diff = Math.max(...t.embedding.map((x, j) => Math.abs(x - embeddings[i][j])));
          expect(diff, `${t.name} should change without scaling`).toBeGreaterThan(1e-3);
        } else {
          expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name);
        }
      }
    } finally {
      await plain.dispose();
    }
  });
});

describe('huge texts', () => {
  it('a 1 MB text is truncated to the maximum length, counted, and embedded like its first tokens', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, maxLength: 64 });
    try {
      const paragraph = reference('nomic-tiny').texts.find((t) => t.name === 'long_paragraph')!;
      const huge = `${paragraph.text} `.repeat(Math.ceil(1_000_000 / paragraph.text.length));
      const { embeddings, stats } = await embedder.embed([huge, paragraph.text]);
      expect(stats.truncatedTexts).toBe(2);
      expect(stats.tokens).toBe(128);
      // Both keep the same first 63 tokens and [SEP], so they embed the same.
      expectClose(embeddings[0], embeddings[1], 1e-6, 'huge text vs its opening');
    } finally {
      await embedder.dispose();
    }
  });
});
