import { MemoryVectorStore } from '@langchain/classic/vectorstores/memory';
import { Embeddings } from '@langchain/core/embeddings';
import { BaseEmbedding } from '@llamaindex/core/embeddings';
import { cosineSimilarity, embed, embedMany } from 'ai';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { Document, Settings, VectorStoreIndex } from 'llamaindex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nomic, NomicEmbeddingModel } from '../src/adapters/ai-sdk.js';
import { NomicEmbeddings } from '../src/adapters/langchain.js';
import { NomicEmbedding } from '../src/adapters/llamaindex.js';
import { SharedEmbedder, type AdapterOptions } from '../src/adapters/shared-embedder.js';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { CancelledError, DisposedError, InputError, ModelFilesError } from '../src/errors.js';
import type { Task } from '../src/pipeline/tokenizer.js';
import { expectClose, fixtureDir, reference } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const MODEL = fixtureDir('nomic-tiny');
const LOAD = { backend: 'wasm', threads: 1 } as const;
const DOCUMENTS = reference('nomic-tiny')
  .texts.map((t) => t.text)
  .filter((text) => text.trim() !== '')
  .slice(0, 10);
const QUERY = 'What is TSNE, the dimensionality reduction algorithm?';
/** Vectors of one call through two routes agree to float32 rounding (batches may be cut differently). */
const SAME_VECTOR = 1e-6;

let embedder: Embedder;

beforeAll(async () => {
  embedder = await loadEmbedder(MODEL, LOAD);
});
afterAll(() => embedder.dispose());

async function direct(texts: readonly string[], task: Task, dimensions?: number): Promise<number[][]> {
  const { embeddings } = await embedder.embed(texts, { task, dimensions });
  return embeddings.map((e) => Array.from(e));
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return dot / Math.sqrt(aa * bb);
}

/** The documents' indices, most similar to the query first, from this package's own vectors. */
async function expectedRanking(): Promise<{ order: number[]; scores: number[] }> {
  const [query] = await direct([QUERY], 'search_query');
  const scores = (await direct(DOCUMENTS, 'search_document')).map((d) => cosine(query, d));
  return { order: scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]), scores };
}

describe('LangChain.js: NomicEmbeddings', () => {
  it('is a LangChain Embeddings whose documents and queries are the embedder’s with their Nomic tasks', async () => {
    const embeddings = new NomicEmbeddings({ model: MODEL, ...LOAD });
    try {
      expect(embeddings).toBeInstanceOf(Embeddings);
      const documents = await embeddings.embedDocuments(DOCUMENTS);
      expect(documents).toEqual(await direct(DOCUMENTS, 'search_document'));
      expect(documents.every((d) => Array.isArray(d))).toBe(true);
      const query = await embeddings.embedQuery(QUERY);
      expect(query).toEqual((await direct([QUERY], 'search_query'))[0]);
      // The prefixes differ: the same text as a document is another vector.
      const [asDocument] = await embeddings.embedDocuments([QUERY]);
      expect(cosine(query, asDocument)).toBeLessThan(0.9999);
    } finally {
      await embeddings.dispose();
    }
  });

  it('retrieves through MemoryVectorStore in the order of the embedder’s own similarities', async () => {
    const embeddings = new NomicEmbeddings({ embedder });
    const store = await MemoryVectorStore.fromTexts(DOCUMENTS, DOCUMENTS.map((_, index) => ({ index })), embeddings);
    const hits = await store.similaritySearchWithScore(QUERY, 4);
    const { order, scores } = await expectedRanking();
    expect(hits.map(([doc]) => doc.metadata.index)).toEqual(order.slice(0, 4));
    hits.forEach(([doc, score]) => expect(score).toBeCloseTo(scores[doc.metadata.index as number], 6));
    const [top] = await store.similaritySearch(QUERY, 1);
    expect(top.pageContent).toBe(DOCUMENTS[order[0]]);
  });

  it('takes Matryoshka dimensions and other tasks', async () => {
    const embeddings = new NomicEmbeddings({ embedder, dimensions: 16, documentTask: 'clustering', queryTask: 'classification' });
    const [document] = await embeddings.embedDocuments([DOCUMENTS[0]]);
    expect(document).toHaveLength(16);
    expect(document).toEqual((await direct([DOCUMENTS[0]], 'clustering', 16))[0]);
    expect(await embeddings.embedQuery(QUERY)).toEqual((await direct([QUERY], 'classification', 16))[0]);
  });
});

describe('LlamaIndex.TS: NomicEmbedding', () => {
  afterAll(() => {
    Settings.embedModel = undefined as unknown as BaseEmbedding;
  });

  it('is a LlamaIndex BaseEmbedding: texts as documents, queries as queries', async () => {
    const model = new NomicEmbedding({ embedder });
    expect(model).toBeInstanceOf(BaseEmbedding);
    expect(await model.getTextEmbeddings(DOCUMENTS)).toEqual(await direct(DOCUMENTS, 'search_document'));
    expect(await model.getTextEmbedding(DOCUMENTS[1])).toEqual((await direct([DOCUMENTS[1]], 'search_document'))[0]);
    const query = await model.getQueryEmbedding({ type: 'text', text: QUERY });
    expect(query).toEqual((await direct([QUERY], 'search_query'))[0]);
    expect(cosine(query!, await model.getTextEmbedding(QUERY))).toBeLessThan(0.9999);
    // A query with no text has no embedding here, as with LlamaIndex's own models.
    expect(await model.getQueryEmbedding({ type: 'image_url', image_url: { url: 'data:image/png;base64,' } })).toBeNull();
  });

  it('embeds a batch in one call and reports its progress', async () => {
    const model = new NomicEmbedding({ embedder });
    const progress: [number, number][] = [];
    const vectors = await model.getTextEmbeddingsBatch(DOCUMENTS, { progressCallback: (done, total) => progress.push([done, total]) });
    expect(vectors).toEqual(await direct(DOCUMENTS, 'search_document'));
    expect(progress.at(-1)).toEqual([DOCUMENTS.length, DOCUMENTS.length]);
  });

  it('retrieves through an in-memory VectorStoreIndex in the order of the embedder’s own similarities', async () => {
    const model = new NomicEmbedding({ model: MODEL, ...LOAD });
    try {
      Settings.embedModel = model;
      // The index stays out of the text LlamaIndex embeds (by default a node's metadata is embedded with it).
      const documents = DOCUMENTS.map((text, index) => new Document({ text, metadata: { index }, excludedEmbedMetadataKeys: ['index'] }));
      const index = await VectorStoreIndex.fromDocuments(documents);
      const hits = await index.asRetriever({ similarityTopK: 4 }).retrieve({ query: QUERY });
      const { order, scores } = await expectedRanking();
      expect(hits.map((hit) => hit.node.metadata.index)).toEqual(order.slice(0, 4));
      hits.forEach((hit) => expect(hit.score).toBeCloseTo(scores[hit.node.metadata.index as number], 6));
    } finally {
      await model.dispose();
    }
  });
});

describe('Vercel AI SDK: nomic.embedding', () => {
  it('is an embedding model of the installed specification, for embedMany and embed', async () => {
    const model = nomic.embedding(MODEL, LOAD);
    try {
      expect(model.specificationVersion).toBe('v4');
      expect(model.supportsParallelCalls).toBe(true);
      expect(model.maxEmbeddingsPerCall).toBe(4096);
      const many = await embedMany({ model, values: DOCUMENTS });
      const expected = await embedder.embed(DOCUMENTS, { task: 'search_document' });
      expect(many.embeddings).toEqual(expected.embeddings.map((e) => Array.from(e)));
      expect(many.usage.tokens).toBe(expected.stats.tokens);
      const query = await embed({ model, value: QUERY, providerOptions: { nomic: { task: 'search_query' } } });
      expect(query.embedding).toEqual((await direct([QUERY], 'search_query'))[0]);
      // Without a task every value is a document: the same text is another vector.
      const asDocument = await embed({ model, value: QUERY });
      expect(cosineSimilarity(query.embedding, asDocument.embedding)).toBeLessThan(0.9999);
      const { order } = await expectedRanking();
      const ranked = many.embeddings.map((e, i) => ({ i, score: cosineSimilarity(query.embedding, e) })).sort((a, b) => b.score - a.score);
      expect(ranked.map((r) => r.i)).toEqual(order);
    } finally {
      await model.dispose();
    }
  });

  it('splits long lists into parallel calls that give the same vectors, and takes dimensions per call', async () => {
    const model = nomic.embedding('shared', { embedder, maxEmbeddingsPerCall: 3 });
    const { embeddings, usage } = await embedMany({ model, values: DOCUMENTS });
    const expected = await embedder.embed(DOCUMENTS, { task: 'search_document' });
    embeddings.forEach((e, i) => expectClose(e, Array.from(expected.embeddings[i]), SAME_VECTOR, `document ${i}`));
    expect(usage.tokens).toBe(expected.stats.tokens);
    const { embeddings: cut } = await model.doEmbed({ values: [QUERY], dimensions: 32 });
    expect(cut[0]).toEqual((await direct([QUERY], 'search_document', 32))[0]);
  });

  it('answers a withdrawn call and bad provider options with this package’s errors', async () => {
    const model = nomic.embedding('shared', { embedder });
    await expect(model.doEmbed({ values: [QUERY], abortSignal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
    await expect(embedMany({ model, values: [QUERY], providerOptions: { nomic: { task: 'search_queries' } } })).rejects.toThrow(
      /providerOptions\.nomic\.task: unknown task "search_queries"; use one of search_query/,
    );
    await expect(model.doEmbed({ values: [QUERY], providerOptions: { nomic: { tsak: 'search_query' } } })).rejects.toBeInstanceOf(InputError);
  });
});

/** Every adapter, built from the same options, for the checks they share. */
const ADAPTERS: [string, (options: AdapterOptions) => { dispose(): Promise<void> }][] = [
  ['NomicEmbeddings', (options) => new NomicEmbeddings(options)],
  ['NomicEmbedding', (options) => new NomicEmbedding(options)],
  ['nomic.embedding', ({ model, ...options }) => new NomicEmbeddingModel(model ?? 'shared', options)],
];

describe.each(ADAPTERS)('%s options', (name, make) => {
  it('fail at construction, naming the option at fault', () => {
    expect(() => make({ model: MODEL, dimension: 64 } as AdapterOptions)).toThrow(/unknown option "dimension"/);
    expect(() => make({ model: MODEL, documentTask: 'search_documents' as Task })).toThrow(/documentTask: unknown task "search_documents"/);
    expect(() => make({ model: MODEL, queryTask: 'query' as Task })).toThrow(InputError);
    expect(() => make({ model: MODEL, dimensions: 0 })).toThrow(/dimensions: must be an integer of at least 1, got number 0/);
    expect(() => make({ model: MODEL, dtype: 'fp8' as 'q8' })).toThrow(/dtype: must be 'fp32' or 'q8', got "fp8"/);
    expect(() => make({ model: MODEL, maxBatchTokens: -1 })).toThrow(/maxBatchTokens: must be an integer of at least 1/);
    expect(() => make({ model: MODEL, precision: 'int8' } as AdapterOptions)).toThrow(/unknown option "precision"/);
    expect(() => make({ embedder, dtype: 'q8' })).toThrow(/dtype cannot apply to an embedder already loaded/);
    expect(() => make({ embedder: {} as Embedder })).toThrow(/embedder: must be an Embedder/);
    if (name !== 'nomic.embedding') {
      // The AI SDK's model id names the folder, so it always has one.
      expect(() => make({})).toThrow(/give either "model" \(a model folder\) or "embedder"/);
      expect(() => make({ model: MODEL, embedder })).toThrow(/give either/);
    }
  });
});

describe('the embedder behind an adapter', () => {
  it('loads on first use, once for calls made together, and again after a load that failed', async () => {
    const folder = join(tempDir(), 'model-arrives-later');
    const shared = new SharedEmbedder('test adapter', { model: folder, ...LOAD });
    await expect(shared.embed(['x'], 'search_query')).rejects.toBeInstanceOf(ModelFilesError);
    cpSync(MODEL, folder, { recursive: true });
    const first = shared.embedder();
    expect(shared.embedder()).toBe(first);
    const { vectors, tokens } = await shared.embed([QUERY], 'search_query');
    expect(vectors).toEqual(await direct([QUERY], 'search_query'));
    expect(tokens).toBeGreaterThan(2);
    await shared.dispose();
    await expect(shared.embed(['x'], 'search_query')).rejects.toThrow(/this test adapter was disposed/);
  });

  it('disposes the model it loaded, and leaves one it was given to its owner', async () => {
    const owned = new SharedEmbedder('owner', { model: MODEL, ...LOAD });
    const loaded = await owned.embedder();
    await owned.dispose();
    await expect(loaded.embed(['x'])).rejects.toBeInstanceOf(DisposedError);
    const borrowed = new NomicEmbeddings({ embedder });
    await borrowed.embedQuery(QUERY);
    await borrowed.dispose();
    await expect(borrowed.embedQuery(QUERY)).rejects.toThrow(/^this NomicEmbeddings was disposed; create a new one$/);
    expect((await embedder.embed([QUERY])).embeddings).toHaveLength(1);
  });
});
