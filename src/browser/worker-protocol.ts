import type { GpuAdapterReport } from '../backends/webgpu/adapter.js';
import type { Dtype } from '../model/projection.js';
import type { EmbedOptions, EmbedResult } from '../pipeline/embed-options.js';
import type { Precision } from '../pipeline/quantize.js';
import type { SerializedError } from '../pool/error-transfer.js';
import type { PageLoadOptions } from './load-embedder.js';

/**
 * The messages between a page and the Web Worker that runs its embedder.
 * Functions and signals do not cross a `postMessage`: progress comes back as
 * messages, and an abort goes over as one.
 */

/** Load options as they cross: everything but the callbacks, the signal and a cache object (a worker opens its own Cache API cache). */
export type CloneableLoadOptions = Omit<PageLoadOptions, 'onProgress' | 'signal' | 'cache'> & { readonly cache?: string | false };
export type CloneableEmbedOptions = Omit<EmbedOptions<Precision>, 'onProgress' | 'signal'>;

/** `aborted`: the call's signal had fired before it was sent. */
export type PageMessage = (
  | { readonly id: number; readonly type: 'load'; readonly source: string; readonly options: CloneableLoadOptions }
  | { readonly id: number; readonly type: 'embed'; readonly texts: readonly string[]; readonly options: CloneableEmbedOptions }
  | { readonly id: number; readonly type: 'abort' }
  | { readonly id: number; readonly type: 'dispose' }
) & { readonly aborted?: boolean };

/** What the page knows of the worker's embedder once it has loaded. */
export interface LoadedEmbedder {
  readonly backend: string;
  readonly device?: GpuAdapterReport;
  readonly dtype: Dtype;
  readonly modelName: string;
  readonly dimensions: number;
  readonly threads: number;
  readonly maxLength: number;
}

export type WorkerMessage =
  | { readonly id: number; readonly type: 'loaded'; readonly embedder: LoadedEmbedder }
  | { readonly id: number; readonly type: 'load-progress'; readonly file: string; readonly loaded: number; readonly total: number | undefined }
  | { readonly id: number; readonly type: 'embed-progress'; readonly done: number; readonly total: number }
  | { readonly id: number; readonly type: 'embedded'; readonly result: EmbedResult<Float32Array | Int8Array | Uint8Array> }
  | { readonly id: number; readonly type: 'disposed' }
  | { readonly id: number; readonly type: 'failed'; readonly error: SerializedError };
