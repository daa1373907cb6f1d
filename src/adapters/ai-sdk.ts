import type { EmbeddingModelV4, EmbeddingModelV4CallOptions, EmbeddingModelV4Result } from '@ai-sdk/provider';
import { InputError } from '../errors.js';
import { checkChoice, checkInteger, checkOptionNames, describe } from '../options.js';
import { EMBED_DEFAULTS } from '../pipeline/embed-options.js';
import { TASKS, type Task } from '../pipeline/tokenizer.js';
import { SharedEmbedder, type AdapterOptions } from './shared-embedder.js';

export interface NomicEmbeddingModelOptions extends Omit<AdapterOptions, 'model'> {
  /**
   * Values per `doEmbed` call: `embedMany` splits larger lists into calls of
   * this size and, as concurrent calls share batches here, runs them at once.
   * @default 4096
   */
  readonly maxEmbeddingsPerCall?: number;
}

/**
 * The AI SDK has no notion of queries and documents: every value gets
 * `documentTask`'s prefix (`search_document: `) unless a call asks for
 * another with `providerOptions: { nomic: { task: 'search_query' } }`.
 */
export interface NomicProviderOptions {
  readonly task?: Task;
}

/**
 * An AI SDK embedding model on this package's embedder, in this process,
 * for `embed` / `embedMany` from `ai`. The model loads on first use.
 */
export class NomicEmbeddingModel implements EmbeddingModelV4 {
  readonly specificationVersion = 'v4';
  readonly provider = 'nomic-embed-tfjs';
  readonly maxEmbeddingsPerCall: number;
  readonly supportsParallelCalls = true;
  private readonly shared: SharedEmbedder;

  constructor(
    readonly modelId: string,
    options: NomicEmbeddingModelOptions = {},
  ) {
    const { maxEmbeddingsPerCall = EMBED_DEFAULTS.chunkSize, ...rest } = options;
    checkInteger('maxEmbeddingsPerCall', maxEmbeddingsPerCall, 1);
    this.maxEmbeddingsPerCall = maxEmbeddingsPerCall;
    this.shared = new SharedEmbedder('nomic.embedding', rest.embedder === undefined ? { ...rest, model: modelId } : rest);
  }

  async doEmbed({ values, dimensions, abortSignal, providerOptions }: EmbeddingModelV4CallOptions): Promise<EmbeddingModelV4Result> {
    const task = taskOf(providerOptions?.nomic) ?? this.shared.documentTask;
    const { vectors, tokens } = await this.shared.embed(values, task, { dimensions, signal: abortSignal });
    return { embeddings: vectors, usage: { tokens }, warnings: [] };
  }

  /** Frees the model this instance loaded (not one it was given); later calls fail. */
  dispose(): Promise<void> {
    return this.shared.dispose();
  }
}

function taskOf(options: unknown): Task | undefined {
  if (options === undefined) return undefined;
  checkOptionNames('providerOptions.nomic', options as object, ['task'] satisfies (keyof NomicProviderOptions)[]);
  const { task } = options as NomicProviderOptions;
  if (task !== undefined) checkChoice('providerOptions.nomic.task', task, TASKS, 'unknown task');
  return task;
}

/**
 * The provider: `nomic.embedding(modelFolder, options)`.
 *
 * @example
 * import { embedMany } from 'ai';
 * const { embeddings } = await embedMany({ model: nomic.embedding('weights/nomic-embed-text-v1.5'), values: texts });
 */
export const nomic = {
  embedding(modelFolder: string, options?: NomicEmbeddingModelOptions): NomicEmbeddingModel {
    if (typeof modelFolder !== 'string') throw new InputError('modelFolder', `must be the path of a model folder, got ${describe(modelFolder)}`);
    return new NomicEmbeddingModel(modelFolder, options);
  },
};
