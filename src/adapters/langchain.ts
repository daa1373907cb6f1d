import { Embeddings } from '@langchain/core/embeddings';
import { SharedEmbedder, type AdapterOptions } from './shared-embedder.js';

export type NomicEmbeddingsOptions = AdapterOptions;

/**
 * LangChain.js embeddings on this package's embedder, in this process:
 * documents get Nomic's `search_document: ` prefix and queries
 * `search_query: ` (see `documentTask`, `queryTask`). The model loads on
 * first use; concurrent calls share its batches.
 *
 * @example
 * const embeddings = new NomicEmbeddings({ model: 'weights/nomic-embed-text-v1.5' });
 * const store = await MemoryVectorStore.fromTexts(texts, {}, embeddings);
 * const hits = await store.similaritySearch('what is tfjs?', 3);
 */
export class NomicEmbeddings extends Embeddings {
  private readonly shared: SharedEmbedder;

  constructor(options: NomicEmbeddingsOptions) {
    // No retries from LangChain's caller: a failure here is not a flaky network, and would fail again.
    super({});
    this.shared = new SharedEmbedder('NomicEmbeddings', options);
  }

  async embedDocuments(documents: string[]): Promise<number[][]> {
    return (await this.shared.embed(documents, this.shared.documentTask)).vectors;
  }

  async embedQuery(query: string): Promise<number[]> {
    const [vector] = (await this.shared.embed([query], this.shared.queryTask)).vectors;
    return vector;
  }

  /** Frees the model this instance loaded (not one it was given); later calls fail. */
  dispose(): Promise<void> {
    return this.shared.dispose();
  }
}
