import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { InputError } from '../src/errors.js';
import { finishVector } from '../src/pipeline/finish-vector.js';
import { serve } from '../src/server/serve.js';
import { expectClose, fixtureDir, reference } from './helpers/fixtures.js';

const MAX = 16;
const texts = reference('nomic-tiny').texts;
const long = texts.find((t) => t.name === 'long_paragraph')!.text;
const limits = { maxBatchTokens: 8192, maxBatchSize: 64, memoryBudgetBytes: 2 ** 31 };

describe("longText: 'mean'", () => {
  let embedder: Embedder;
  beforeAll(async () => {
    embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, maxLength: MAX });
  });
  afterAll(() => embedder.dispose());

  it.each([0, 4])('splits a long text into windows with the prefix, [CLS] and [SEP], overlapping by %i', (overlap) => {
    const whole = embedder.tokenizer.windows(long, undefined, 0);
    const windows = embedder.tokenizer.windows(long, 'search_document', overlap);
    const prefix = Array.from(embedder.tokenizer.windows('x', 'search_document', 0)[0].slice(1, -2));
    expect(prefix.length).toBeGreaterThan(0);
    for (const w of windows) {
      expect(w.length).toBeLessThanOrEqual(MAX);
      expect(w[0]).toBe(101);
      expect(Array.from(w.slice(1, 1 + prefix.length))).toEqual(prefix);
      expect(w[w.length - 1]).toBe(102);
    }
    const bodies = windows.map((w) => Array.from(w.slice(1 + prefix.length, -1)));
    for (let i = 1; i < bodies.length; i++) expect(bodies[i].slice(0, overlap)).toEqual(bodies[i - 1].slice(-overlap || bodies[i - 1].length));
    // Together the windows hold every token of the text, in order.
    const joined = bodies.flatMap((b, i) => (i === 0 ? b : b.slice(overlap)));
    const tokens = whole.flatMap((w) => Array.from(w.slice(1, -1)));
    expect(joined).toEqual(tokens);
  });

  it.each([0, 4])('embeds the token-weighted mean of the windows embedded one by one (overlap %i)', async (overlap) => {
    const windows = embedder.tokenizer.windows(long, 'search_document', overlap);
    expect(windows.length).toBeGreaterThan(20);
    const sum = new Float64Array(64);
    let weight = 0;
    for (const w of windows) {
      let pooled: Float32Array = new Float32Array(0);
      await embedder.queue.submit({ sequences: [w], limits, pooling: 'mean', onVector: (_, vector) => (pooled = vector) });
      pooled.forEach((x, d) => (sum[d] += x * w.length));
      weight += w.length;
    }
    const pooled = Float32Array.from(sum, (x) => x / weight);
    for (const dims of [undefined, 32]) {
      const expected = finishVector(pooled, { dimensions: dims ?? 64, matryoshka: dims !== undefined, normalize: true });
      const { embeddings, stats } = await embedder.embed([long], { longText: 'mean', overlap, task: 'search_document', dimensions: dims });
      expectClose(embeddings[0], expected, 1e-6, `mean of ${windows.length} windows, ${dims ?? 64} dimensions`);
      expect(stats.windows).toBe(windows.length);
      expect(stats.truncatedTexts).toBe(0);
    }
  });

  it('leaves a text that fits unchanged, and holds order and batch invariance', async () => {
    const inputs = [texts[0].text, long, texts[3].text, long.slice(0, 400), texts[5].text];
    const truncated = await embedder.embed([texts[0].text, texts[3].text, texts[5].text]);
    const reference = await embedder.embed(inputs, { longText: 'mean' });
    expect(reference.embeddings[0]).toEqual(truncated.embeddings[0]);
    expect(reference.embeddings[2]).toEqual(truncated.embeddings[1]);
    expect(reference.embeddings[4]).toEqual(truncated.embeddings[2]);
    for (const options of [{ maxBatchSize: 1 }, { maxBatchSize: 3 }, { maxBatchTokens: 40 }]) {
      const order = [4, 1, 0, 3, 2];
      const { embeddings } = await embedder.embed(order.map((i) => inputs[i]), { longText: 'mean', ...options });
      order.forEach((i, row) => expectClose(embeddings[row], reference.embeddings[i], 1e-6, `text ${i} with ${JSON.stringify(options)}`));
    }
  });

  it('is on every HTTP API too (long_text), as is int8 calibration, with the library\'s vectors', async () => {
    const server = await serve(embedder, { port: 0 });
    const post = async (path: string, body: unknown) => {
      const response = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as any };
    };
    try {
      const input = [texts[0].text, long];
      const mean = (await embedder.embed(input, { longText: 'mean', task: 'search_document' })).embeddings.map((v) => Array.from(v));
      expect((await post('/v1/embeddings', { input, long_text: 'mean', task: 'search_document' })).body.data.map((d: any) => d.embedding)).toEqual(mean);
      expect((await post('/embed', { inputs: input, long_text: 'mean', prompt_name: 'search_document' })).body).toEqual(mean);
      expect((await post('/api/embed', { input, long_text: 'mean', task: 'search_document' })).body.embeddings).toEqual(mean);
      // Without it, a long text is refused as before (OpenAI and TEI do not truncate unless asked).
      expect((await post('/v1/embeddings', { input })).status).toBe(400);
      const bad = await post('/embed', { inputs: input, long_text: 'average' });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/longText: must be 'truncate' or 'mean', got "average"/);

      const calibration = texts.slice(0, 6).map((t) => t.text).filter((t) => t.length > 0);
      const short = [texts[1].text, texts[2].text];
      const int8 = await embedder.embed(short, { precision: 'int8', calibration, truncation: 'truncate' });
      const unit = await embedder.embed(short, { precision: 'int8' });
      expect(int8.embeddings.map((v) => Array.from(v))).not.toEqual(unit.embeddings.map((v) => Array.from(v)));
      const answer = await post('/v1/embeddings', { input: short, precision: 'int8', calibration, truncate: true });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.data.map((d: any) => d.embedding)).toEqual(int8.embeddings.map((v) => Array.from(v)));
      expect((await post('/api/embed', { input: short, precision: 'int8', calibration: [] })).status).toBe(400);
    } finally {
      await server.close();
    }
  });

  it('refuses an overlap as wide as a window', async () => {
    const error = await embedder.embed([long], { longText: 'mean', overlap: 14 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(/overlap: must be less than the 14 text tokens a window of 16 holds, got 14/);
  });
});
