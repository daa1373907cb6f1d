import { DisposedError, InputError, WorkerError } from '../errors.js';
import type { EmbedOptions, EmbedResult } from '../pipeline/embed-options.js';
import type { Precision, VectorOf } from '../pipeline/quantize.js';
import { deserializeError } from '../pool/error-transfer.js';
import type { PageLoadOptions } from './load-embedder.js';
import { isHubRepository } from './model-files.js';
import type { CloneableEmbedOptions, CloneableLoadOptions, LoadedEmbedder, PageMessage, WorkerMessage } from './worker-protocol.js';

/** The page's side of a Worker: what `createEmbedderWorker` talks to. */
export interface WorkerLike {
  postMessage(message: PageMessage): void;
  addEventListener(type: 'message', listener: (event: { data: WorkerMessage }) => void): void;
  addEventListener(type: 'error', listener: (event: { message?: string }) => void): void;
  terminate(): void;
}

interface Pending {
  resolve(message: WorkerMessage): void;
  reject(error: Error): void;
  progress(message: WorkerMessage): void;
}

/**
 * An embedder in a Web Worker, so the page stays responsive while it loads and
 * embeds: the same `embed` as {@link Embedder}, its vectors transferred from
 * the worker without a copy.
 */
export class WorkerEmbedder implements LoadedEmbedder {
  readonly backend: string;
  readonly device: LoadedEmbedder['device'];
  readonly dtype: LoadedEmbedder['dtype'];
  readonly modelName: string;
  readonly dimensions: number;
  readonly threads: number;
  readonly maxLength: number;

  /** @internal made by {@link createEmbedderWorker} */
  constructor(
    private readonly channel: WorkerChannel,
    loaded: LoadedEmbedder,
  ) {
    this.backend = loaded.backend;
    this.device = loaded.device;
    this.dtype = loaded.dtype;
    this.modelName = loaded.modelName;
    this.dimensions = loaded.dimensions;
    this.threads = loaded.threads;
    this.maxLength = loaded.maxLength;
  }

  /** As {@link Embedder.embed}; `onProgress` and `signal` work across the worker boundary. */
  async embed<P extends Precision = 'float32'>(texts: readonly string[], options: EmbedOptions<P> = {}): Promise<EmbedResult<VectorOf<P>>> {
    const { onProgress, signal, ...rest } = options;
    const reply = await this.channel.request(
      (id) => ({ id, type: 'embed', texts: [...texts], options: rest as CloneableEmbedOptions }),
      signal,
      (message) => {
        if (message.type === 'embed-progress') onProgress?.(message.done, message.total);
      },
    );
    return (reply as Extract<WorkerMessage, { type: 'embedded' }>).result as EmbedResult<VectorOf<P>>;
  }

  /** Frees the model and ends the worker. */
  async dispose(): Promise<void> {
    await this.channel.request((id) => ({ id, type: 'dispose' })).catch(() => undefined);
    this.channel.close();
  }
}

/**
 * Starts a Web Worker and loads `source` there (a hub repository id or a
 * model folder's URL, as `loadEmbedder`). By default the worker is this
 * package's `worker-entry.js`, started as a module worker (bundlers such as
 * Vite recognise the `new URL(…, import.meta.url)` it is named by); pass your
 * own `worker` running `serveEmbedder(self)` to start it differently.
 *
 * @example
 * const embedder = await createEmbedderWorker('nomic-ai/nomic-embed-text-v1.5');
 * const { embeddings } = await embedder.embed(['hello'], { task: 'search_query' });
 */
export async function createEmbedderWorker(source: string, options: PageLoadOptions = {}, worker?: WorkerLike): Promise<WorkerEmbedder> {
  const { onProgress, signal, cache, ...rest } = options;
  if (cache !== undefined && cache !== false && typeof cache !== 'string') {
    throw new InputError('cache', 'a worker opens its own Cache API cache: pass a cache name or false (a cache object cannot cross to a worker)');
  }
  const channel = new WorkerChannel(worker ?? startPackagedWorker());
  const here = (globalThis as { location?: { href: string } }).location?.href;
  // A worker resolves relative URLs against its own script, not the page.
  const absolute = (url: string) => (here === undefined ? url : new URL(url, here).href);
  const wasmPaths = typeof rest.wasmPaths === 'string' ? absolute(rest.wasmPaths) : rest.wasmPaths && Object.fromEntries(Object.entries(rest.wasmPaths).map(([file, url]) => [file, absolute(url!)]));
  const loadOptions: CloneableLoadOptions = { ...rest, ...(wasmPaths === undefined ? {} : { wasmPaths }), ...(cache === undefined ? {} : { cache }) };
  try {
    const reply = await channel.request(
      (id) => ({ id, type: 'load', source: typeof source === 'string' && !isHubRepository(source) ? absolute(source) : source, options: loadOptions }),
      signal,
      (message) => {
        if (message.type === 'load-progress') onProgress?.(message.file, message.loaded, message.total);
      },
    );
    return new WorkerEmbedder(channel, (reply as Extract<WorkerMessage, { type: 'loaded' }>).embedder);
  } catch (error) {
    channel.close();
    throw error;
  }
}

/**
 * This package's worker script, as a module worker. Spelled
 * `new Worker(new URL('…', import.meta.url))` to the letter: the form
 * bundlers find and bundle the worker from.
 */
function startPackagedWorker(): WorkerLike {
  const Worker = (globalThis as { Worker?: new (url: URL, options: { type: 'module' }) => WorkerLike }).Worker;
  if (Worker === undefined) throw new InputError('worker', 'this context has no Web Workers: pass a worker, or use loadEmbedder');
  return new Worker(new URL('./worker-entry.js', import.meta.url), { type: 'module' });
}

/** Requests to the worker by id, each answered once; progress messages on the way. */
class WorkerChannel {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed: Error | undefined;

  constructor(private readonly worker: WorkerLike) {
    worker.addEventListener('message', ({ data }) => {
      const pending = this.pending.get(data.id);
      if (pending === undefined) return;
      if (data.type === 'load-progress' || data.type === 'embed-progress') return pending.progress(data);
      this.pending.delete(data.id);
      if (data.type === 'failed') pending.reject(deserializeError(data.error));
      else pending.resolve(data);
    });
    worker.addEventListener('error', (event) => {
      // A worker's uncaught error, or a script that failed to load: every waiting call learns of it.
      this.fail(new WorkerError(`the embedder's worker failed: ${event.message ?? 'its script did not load'}`, 'exited'));
    });
  }

  request(make: (id: number) => PageMessage, signal?: AbortSignal, progress: (message: WorkerMessage) => void = () => undefined): Promise<WorkerMessage> {
    if (this.closed !== undefined) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<WorkerMessage>((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ id, type: 'abort' });
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (m) => (settle(), resolve(m)),
        reject: (e) => (settle(), reject(e)),
        progress,
      });
      const message = make(id);
      this.worker.postMessage(signal?.aborted === true ? { ...message, aborted: true } : message);
    });
  }

  close(): void {
    this.fail(new DisposedError('the worker\u2019s embedder', 'create a new worker with createEmbedderWorker'));
    this.worker.terminate();
  }

  private fail(error: Error): void {
    this.closed ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
