import type { Embedder } from '../embedder-core.js';
import { DisposedError, InputError } from '../errors.js';
import { serializeError } from '../pool/error-transfer.js';
import { loadEmbedder } from './load-embedder.js';
import type { PageMessage, WorkerMessage } from './worker-protocol.js';

/** The side of a worker `postMessage` and `addEventListener('message')` are called on: a `DedicatedWorkerGlobalScope`, or a test's stand-in. */
export interface MessageScope {
  postMessage(message: WorkerMessage, transfer?: ArrayBuffer[]): void;
  addEventListener(type: 'message', listener: (event: { data: PageMessage }) => void): void;
}

/**
 * Runs one embedder inside a Web Worker for the page that started it (see
 * `createEmbedderWorker`): loads it, embeds, and sends each result's vectors
 * back by transferring their buffers, so nothing is copied.
 */
export function serveEmbedder(scope: MessageScope): void {
  let loading: Promise<Embedder> | undefined;
  const aborts = new Map<number, AbortController>();
  const reply = (message: WorkerMessage, transfer: ArrayBuffer[] = []) => scope.postMessage(message, transfer);
  const fail = (id: number, error: unknown) => reply({ id, type: 'failed', error: serializeError(error) });

  const handlers: { [T in Exclude<PageMessage['type'], 'abort'>]: (message: Extract<PageMessage, { type: T }>, signal: AbortSignal) => Promise<void> } = {
    load: async ({ id, source, options }, signal) => {
      if (loading !== undefined) throw new InputError('load', 'this worker has loaded its embedder already; start another worker for another model');
      loading = loadEmbedder(source, { ...options, signal, onProgress: (file, loaded, total) => reply({ id, type: 'load-progress', file, loaded, total }) });
      const embedder = await loading.catch((error: unknown) => {
        loading = undefined;
        throw error;
      });
      reply({
        id,
        type: 'loaded',
        embedder: {
          backend: embedder.backend,
          device: embedder.device,
          dtype: embedder.dtype,
          modelName: embedder.modelName,
          dimensions: embedder.config.n_embd,
          threads: embedder.threads,
          maxLength: embedder.tokenizer.maxLength,
        },
      });
    },
    embed: async ({ id, texts, options }, signal) => {
      if (loading === undefined) throw new DisposedError('the worker\u2019s embedder', 'create a new worker with createEmbedderWorker');
      const embedder = await loading;
      const result = await embedder.embed(texts, { ...options, signal, onProgress: (done, total) => reply({ id, type: 'embed-progress', done, total }) });
      reply({ id, type: 'embedded', result }, distinctBuffers(result.embeddings));
    },
    dispose: async ({ id }) => {
      const embedder = loading;
      loading = undefined;
      if (embedder !== undefined) await (await embedder.catch(() => undefined))?.dispose();
      reply({ id, type: 'disposed' });
    },
  };

  scope.addEventListener('message', ({ data }) => {
    if (data.type === 'abort') {
      aborts.get(data.id)?.abort();
      return;
    }
    const controller = new AbortController();
    aborts.set(data.id, controller);
    if (data.aborted === true) controller.abort();
    const handle = handlers[data.type] as (message: typeof data, signal: AbortSignal) => Promise<void>;
    handle(data, controller.signal)
      .catch((error: unknown) => fail(data.id, error))
      .finally(() => aborts.delete(data.id));
  });
}

/** Each vector's buffer once: vectors cut from one buffer are sent as views of it. */
function distinctBuffers(vectors: readonly ArrayBufferView[]): ArrayBuffer[] {
  return [...new Set(vectors.map((v) => v.buffer as ArrayBuffer))];
}
