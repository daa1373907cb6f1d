import { BaseEmbedding, type BaseEmbeddingOptions } from '@llamaindex/core/embeddings';
import type { MessageContentDetail } from '@llamaindex/core/llms';
import { extractSingleText } from '@llamaindex/core/utils';
import { SharedEmbedder, type AdapterOptions } from './shared-embedder.js';

export type NomicEmbeddingOptions = AdapterOptions;

/**
 * A LlamaIndex.TS embedding model on this package's embedder, in this
 * process: texts (the nodes an index stores) get Nomic's `search_document: `
 * prefix, queries `search_query: ` (see `documentTask`, `queryTask`). The
 * model loads on first use; concurrent calls share its batches.
 *
 * @example
 * const index = await VectorStoreIndex.fromDocuments(documents, { embedModel: new NomicEmbedding({ model: dir }) });
 */
export class NomicEmbedding extends BaseEmbedding {
  private readonly shared: SharedEmbedder;

  constructor(options: NomicEmbeddingOptions) {
    super();
    this.shared = new SharedEmbedder('NomicEmbedding', options);
  }

  override getTextEmbeddings = async (texts: string[]): Promise<number[][]> =>
    (await this.shared.embed(texts, this.shared.documentTask)).vectors;

  async getTextEmbedding(text: string): Promise<number[]> {
    const [vector] = await this.getTextEmbeddings([text]);
    return vector;
  }

  /**
   * All the texts in one call rather than LlamaIndex's slices of
   * `embedBatchSize`: the embedder sorts them by length into its own batches,
   * and reports progress as they finish.
   */
  override async getTextEmbeddingsBatch(texts: string[], options?: BaseEmbeddingOptions): Promise<number[][]> {
    const onProgress = options?.progressCallback;
    return (await this.shared.embed(texts, this.shared.documentTask, { onProgress })).vectors;
  }

  /** The query's text with the query prefix; null (as LlamaIndex's models answer) for a query with no text, such as an image. */
  override async getQueryEmbedding(query: MessageContentDetail): Promise<number[] | null> {
    const text = extractSingleText(query);
    if (text === null) return null;
    const [vector] = (await this.shared.embed([text], this.shared.queryTask)).vectors;
    return vector;
  }

  /** Frees the model this instance loaded (not one it was given); later calls fail. */
  dispose(): Promise<void> {
    return this.shared.dispose();
  }
}
