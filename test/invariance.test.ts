import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUSED_MAX_LENGTH } from '../src/backends/policy.js';
import { loadEmbedder } from '../src/embedder.js';
import { loadModel } from '../src/model/load-model.js';
import type { NomicBertModel } from '../src/model/nomic-bert.js';
import { finishVector } from '../src/pipeline/finish-vector.js';
import { pool } from '../src/pipeline/pooling.js';
import { useBackend } from './helpers/backend.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE, type ReferenceText } from './helpers/fixtures.js';

/** Float32 rounding differences between a padded batch and a lone text stay far below this. */
const BATCH_TOLERANCE = 1e-6;

/** Right-pads the texts into one batch and returns each text's normalized embedding. */
function embedBatch(model: NomicBertModel, texts: readonly ReferenceText[]): Float32Array[] {
  const T = Math.max(...texts.map((t) => t.num_tokens));
  const pad = (values: number[]) => [...values, ...new Array(T - values.length).fill(0)];
  return tf.tidy(() => {
    const shape: [number, number] = [texts.length, T];
    const attentionMask = tf.tensor2d(texts.flatMap((t) => pad(t.attention_mask)), shape, 'int32');
    const hidden = model.forward({
      inputIds: tf.tensor2d(texts.flatMap((t) => pad(t.input_ids)), shape, 'int32'),
      attentionMask,
      tokenTypeIds: tf.tensor2d(texts.flatMap((t) => pad(t.token_type_ids)), shape, 'int32'),
    });
    const pooled = pool(hidden, attentionMask, 'mean').arraySync();
    return pooled.map((row) => finishVector(Float32Array.from(row), { dimensions: row.length, matryoshka: false, normalize: true }));
  });
}

describe.each(FIXTURE_NAMES)('%s: a text embeds the same alone and in any padded batch', (fixture) => {
  let model: NomicBertModel;
  const texts = reference(fixture).texts;
  let alone: Float32Array[];

  beforeAll(async () => {
    await useBackend('wasm');
    model = loadModel(fixtureDir(fixture));
    alone = texts.map((t) => embedBatch(model, [t])[0]);
  });
  afterAll(() => model.dispose());

  it('matches the reference when embedded alone', () => {
    texts.forEach((t, i) => expectClose(alone[i], t.embedding, TOLERANCE.embedding, t.name));
  });

  const orders: [string, (n: number) => number[]][] = [
    ['input order', (n) => [...Array(n).keys()]],
    ['reversed', (n) => [...Array(n).keys()].reverse()],
    ['interleaved', (n) => [...Array(n).keys()].sort((a, b) => (a % 3) - (b % 3) || b - a)],
  ];
  it.each(orders)('all texts in one batch, %s', (_, order) => {
    const indices = order(texts.length);
    const batched = embedBatch(model, indices.map((i) => texts[i]));
    indices.forEach((textIndex, row) => {
      expectClose(batched[row], alone[textIndex], BATCH_TOLERANCE, `${texts[textIndex].name} in row ${row}`);
    });
  });

  it('a short text beside the longest one', () => {
    const longest = texts.reduce((a, b) => (a.num_tokens >= b.num_tokens ? a : b));
    for (const [i, t] of texts.entries()) {
      if (t === longest) continue;
      expectClose(embedBatch(model, [t, longest])[0], alone[i], BATCH_TOLERANCE, `${t.name} beside ${longest.name}`);
    }
  });

  it('keeps no tensor alive after a forward pass', () => {
    // Outside any tidy, which would free a leak before it is counted.
    const batch = texts.slice(0, 4);
    const T = Math.max(...batch.map((t) => t.num_tokens));
    const pad = (values: number[]) => [...values, ...new Array(T - values.length).fill(0)];
    const inputIds = tf.tensor2d(batch.flatMap((t) => pad(t.input_ids)), [batch.length, T], 'int32');
    const attentionMask = tf.tensor2d(batch.flatMap((t) => pad(t.attention_mask)), [batch.length, T], 'int32');
    const before = tf.memory().numTensors;
    model.forward({ inputIds, attentionMask }).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([inputIds, attentionMask]);
  });
});

describe('on wasm, through the embedder', () => {
  it('a text of at most FUSED_MAX_LENGTH tokens gets the same vector bit for bit alone and queued with longer texts', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm' });
    try {
      const texts = reference('nomic-tiny').texts;
      const short = texts.filter((t) => t.num_tokens <= FUSED_MAX_LENGTH);
      const long = texts.filter((t) => t.num_tokens > FUSED_MAX_LENGTH);
      expect(short.length).toBeGreaterThan(1);
      expect(long.length).toBeGreaterThan(0);
      const alone = await Promise.all(short.map(async (t) => (await embedder.embed([t.text])).embeddings[0]));
      // Longest first with a budget that takes them all: without the break the short texts would share the long one's batch.
      const together = (await embedder.embed([...long, ...short].map((t) => t.text), { maxBatchTokens: 1 << 16 })).embeddings.slice(long.length);
      together.forEach((v, i) => expect([...v].filter((x, d) => !Object.is(x, alone[i][d])).length, short[i].name).toBe(0));
    } finally {
      await embedder.dispose();
    }
  });
});
