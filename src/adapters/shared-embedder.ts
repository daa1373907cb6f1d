import { loadEmbedder, type Embedder } from '../embedder.js';
import { DisposedError, InputError } from '../errors.js';
import { checkChoice, checkInteger, checkOptionNames, describe } from '../options.js';
import {
  checkEmbedOptionsAhead,
  checkLoadOptions,
  EMBED_OPTION_NAMES,
  LOAD_OPTION_NAMES,
  type EmbedOptions,
  type LoadEmbedderOptions,
} from '../pipeline/embed-options.js';
import { TASKS, type Task } from '../pipeline/tokenizer.js';

/** The `embed` options an adapter fixes once for all its calls: frameworks want float vectors, and give tasks per method. */
export type AdapterEmbedOptions = Omit<EmbedOptions, 'task' | 'precision' | 'ranges' | 'calibration' | 'onProgress' | 'signal'>;

/** What every framework adapter takes: a model, how to load it, and how to embed with it. */
export interface AdapterOptions extends LoadEmbedderOptions, AdapterEmbedOptions {
  /** The model folder, loaded on first use. Give this or `embedder`. */
  readonly model?: string;
  /**
   * An embedder already loaded, to share one model among adapters or with
   * direct calls; the adapter never disposes it. Load options do not apply then.
   */
  readonly embedder?: Embedder;
  /** Nomic task prefix for the texts a framework stores. @default 'search_document' */
  readonly documentTask?: Task;
  /** Nomic task prefix for the texts a framework searches with. @default 'search_query' */
  readonly queryTask?: Task;
}

export const ADAPTER_DEFAULTS = { documentTask: 'search_document', queryTask: 'search_query' } as const satisfies Partial<AdapterOptions>;

const OWN_OPTION_NAMES = Object.keys({ model: true, embedder: true, documentTask: true, queryTask: true } satisfies Record<
  Exclude<keyof AdapterOptions, keyof LoadEmbedderOptions | keyof AdapterEmbedOptions>,
  true
>);
const FIXED_EMBED_OPTIONS: readonly string[] = ['task', 'precision', 'ranges', 'calibration', 'onProgress', 'signal'];
const ADAPTER_EMBED_OPTION_NAMES = EMBED_OPTION_NAMES.filter((name) => !FIXED_EMBED_OPTIONS.includes(name));

/** Vectors for a framework: plain arrays, and the tokens they took (for usage reports). */
export interface AdapterVectors {
  readonly vectors: number[][];
  readonly tokens: number;
}

/** Per call, what a framework may pass on. */
export interface AdapterCallOptions {
  readonly dimensions?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * The one embedder behind an adapter: checked options at construction, the
 * model loaded once on first use (concurrent first calls wait on the same
 * load; a failed load is tried again by the next call), disposed on request.
 */
export class SharedEmbedder {
  readonly documentTask: Task;
  readonly queryTask: Task;
  private readonly model: string | undefined;
  private readonly loadOptions: LoadEmbedderOptions;
  private readonly embedOptions: AdapterEmbedOptions;
  private loading: Promise<Embedder> | undefined;
  private disposed = false;

  /** @param what the adapter's name, as error messages name it. */
  constructor(
    readonly what: string,
    options: AdapterOptions,
  ) {
    checkOptionNames(`${what} options`, options, [...OWN_OPTION_NAMES, ...LOAD_OPTION_NAMES, ...ADAPTER_EMBED_OPTION_NAMES]);
    const { model, embedder, documentTask = ADAPTER_DEFAULTS.documentTask, queryTask = ADAPTER_DEFAULTS.queryTask } = options;
    if ((model === undefined) === (embedder === undefined)) {
      throw new InputError(`${what} options`, 'give either "model" (a model folder) or "embedder" (one already loaded)');
    }
    if (model !== undefined && (typeof model !== 'string' || model === '')) {
      throw new InputError('model', `must be the path of a model folder, got ${describe(model)}`);
    }
    if (embedder !== undefined && typeof (embedder as Partial<Embedder>).embed !== 'function') {
      throw new InputError('embedder', `must be an Embedder from loadEmbedder, got ${describe(embedder)}`);
    }
    checkChoice('documentTask', documentTask, TASKS, 'unknown task');
    checkChoice('queryTask', queryTask, TASKS, 'unknown task');
    this.loadOptions = pick(options, LOAD_OPTION_NAMES);
    if (embedder !== undefined && Object.keys(this.loadOptions).length > 0) {
      throw new InputError(`${what} options`, `${Object.keys(this.loadOptions).join(', ')} cannot apply to an embedder already loaded`);
    }
    checkLoadOptions(this.loadOptions);
    this.embedOptions = pick(options, ADAPTER_EMBED_OPTION_NAMES);
    if (this.embedOptions.dimensions !== undefined) checkInteger('dimensions', this.embedOptions.dimensions, 1);
    checkEmbedOptionsAhead(this.embedOptions);
    this.model = model;
    this.documentTask = documentTask;
    this.queryTask = queryTask;
    if (embedder !== undefined) this.loading = Promise.resolve(embedder);
  }

  /** The embedder, loading it on first use. */
  embedder(): Promise<Embedder> {
    if (this.disposed) return Promise.reject(new DisposedError(`this ${this.what}`, 'create a new one'));
    if (this.loading === undefined) {
      const loading = loadEmbedder(this.model!, this.loadOptions);
      this.loading = loading;
      loading.catch(() => {
        if (this.loading === loading) this.loading = undefined;
      });
    }
    return this.loading;
  }

  async embed(texts: readonly string[], task: Task, call: AdapterCallOptions = {}): Promise<AdapterVectors> {
    const embedder = await this.embedder();
    const { embeddings, stats } = await embedder.embed(texts, {
      ...this.embedOptions,
      ...pick<AdapterCallOptions>(call),
      task,
    });
    return { vectors: embeddings.map((e) => Array.from(e)), tokens: stats.tokens };
  }

  /** Frees the model this adapter loaded; an embedder it was given stays with its owner. Later calls fail. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const loading = this.loading;
    this.loading = undefined;
    if (this.model === undefined || loading === undefined) return;
    const embedder = await loading.catch(() => undefined);
    await embedder?.dispose();
  }
}

/** The options among `names` that are set: an option given as undefined takes its default, as it would alone. */
function pick<T extends object>(options: object, names: readonly string[] = Object.keys(options)): T {
  return Object.fromEntries(Object.entries(options).filter(([name, value]) => names.includes(name) && value !== undefined)) as T;
}
