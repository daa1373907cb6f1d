/**
 * The package in a web page or a Web Worker, chosen by the `browser`
 * condition of its exports: the same `loadEmbedder` and `embed`, with model
 * files fetched over HTTP and kept in the Cache API. Nothing here reaches a
 * Node module.
 */
export { loadEmbedder, PAGE_LOAD_OPTION_NAMES } from './load-embedder.js';
export type { PageLoadOptions } from './load-embedder.js';
export { Embedder } from '../embedder-core.js';
export { DEFAULT_CACHE_NAME, DEFAULT_ENDPOINT, isHubRepository, modelBaseUrl } from './model-files.js';
export type { ModelFilesOptions } from './model-files.js';
export { PAGE_BACKENDS } from './page-backend.js';
export type { PageBackendChoice, PageBackendName, WasmPaths } from './page-backend.js';
export type { ProgressCallback, ResponseCache } from '../download/fetch-cached.js';
export { NOMIC_V15_DIMENSIONS } from '../pipeline/embed-options.js';
export type { EmbedOptions, EmbedResult } from '../pipeline/embed-options.js';
export type { EmbedStats } from '../pipeline/stats.js';
export type { Task, Truncation } from '../pipeline/tokenizer.js';
export { TASK_PREFIXES } from '../pipeline/tokenizer.js';
export type { Pooling } from '../pipeline/pooling.js';
export { cosineTopK, hammingTopK } from '../search/top-k.js';
export type { Corpus, Ranked, Scored } from '../search/top-k.js';
export { quantize, PRECISIONS } from '../pipeline/quantize.js';
export type { Precision, VectorOf } from '../pipeline/quantize.js';
export * from '../errors.js';
export { createEmbedderWorker, WorkerEmbedder } from './embedder-worker.js';
export type { WorkerLike } from './embedder-worker.js';
export { serveEmbedder } from './worker.js';
export type { MessageScope } from './worker.js';
