import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DEFAULT_MAX_BATCH_SIZE, NOMIC_V15_DIMENSIONS } from '../pipeline/embed-options.js';
import type { Embedder } from '../embedder.js';
import { CancelledError, InputError } from '../errors.js';
import { checkInteger, checkOptionNames } from '../options.js';
import { TASK_PREFIXES, type Task } from '../pipeline/tokenizer.js';
import { ApiError, toApiError } from './api-error.js';
import type { ApiContext } from './apis/context.js';
import { ollamaError, registerOllama } from './apis/ollama.js';
import { openAiError, registerOpenAi } from './apis/openai.js';
import { registerTei, teiError } from './apis/tei.js';
import { runEmbedCall, type ServiceLimits } from './embed-call.js';
import type { ServerMetrics } from './metrics.js';

export interface ServeOptions {
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** 0 takes a free port. @default 8080 */
  readonly port?: number;
  /** Required as `Authorization: Bearer <key>` on every route but /health. @default none */
  readonly apiKey?: string;
  /** What clients give as `model`. @default the model folder's name */
  readonly servedModelName?: string;
  /** Task prefix for requests that name none. @default none */
  readonly defaultTask?: Task;
  /** Padded tokens per forward batch. @default the embedder's backend's: 2048 on wasm, else 8192 */
  readonly maxBatchTokens?: number;
  /** Texts per forward batch. @default 64 */
  readonly maxBatchSize?: number;
  /** Tokens waiting at once over all requests; past it, 429. @default 16 × maxBatchTokens */
  readonly maxQueueTokens?: number;
  /** Texts in one request; past it, 413. @default 2048 */
  readonly maxRequestTexts?: number;
  /** Request body size; past it, 413. @default 32 MiB */
  readonly maxBodyBytes?: number;
  /** How long an idle server waits to batch a lone request with others. @default 1 */
  readonly batchWaitMs?: number;
  /** Allowed CORS origin (`*` for any). @default none: no CORS headers */
  readonly cors?: string;
  /** Fastify's logger (pino): true, false or its options. @default false */
  readonly logger?: boolean | Record<string, unknown>;
  /** Time for a request's headers to arrive; past it, 408 and the connection closes. @default 10 s */
  readonly headersTimeoutMs?: number;
  /** Time for a whole request, body included, to arrive (not to be answered); past it, 408. @default 60 s */
  readonly requestTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open. @default 5 s */
  readonly keepAliveTimeoutMs?: number;
  /** Open connections at most; one more is closed as it arrives. @default 512 */
  readonly maxConnections?: number;
}

const SERVE_OPTION_NAMES: readonly (keyof ServeOptions)[] = [
  'host', 'port', 'apiKey', 'servedModelName', 'defaultTask', 'maxBatchTokens', 'maxBatchSize',
  'maxQueueTokens', 'maxRequestTexts', 'maxBodyBytes', 'batchWaitMs', 'cors', 'logger',
  'headersTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'maxConnections',
];

export type ServerState = 'loading' | 'serving' | 'draining' | 'closed';

export interface EmbeddingServer {
  /** `http://host:port` the server listens on. */
  readonly url: string;
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  readonly state: ServerState;
  /** Resolves once the embedder is loaded and requests are served; rejects if it fails to load. */
  readonly ready: Promise<void>;
  /**
   * Drains: stops accepting connections, closes at once every connection
   * that has no request whose body has arrived (idle keep-alives, slow or
   * cut-off clients), answers the requests that have (each answer closing
   * its connection; /health answers 503 meanwhile), and resolves as soon as
   * they are answered. `graceMs` bounds only those: past it, what is left
   * fails with 503 and every connection closes. Does not dispose the
   * embedder. Safe to call twice.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves an embedder over HTTP with the OpenAI (`POST /v1/embeddings`), TEI
 * (`POST /embed`) and Ollama (`POST /api/embed`) APIs, plus `GET /health`,
 * `/info` and `/metrics`. Texts of concurrent requests share forward batches.
 * Given a promise of an embedder, the server listens at once and answers 503
 * until it is loaded.
 *
 * @example
 * const server = await serve(await loadEmbedder('weights/nomic-embed-text-v1.5'), { port: 8080 });
 * // curl http://127.0.0.1:8080/v1/embeddings -H 'content-type: application/json' -d '{"input": "hello"}'
 * await server.close();
 */
export async function serve(embedder: Embedder | Promise<Embedder>, options: ServeOptions = {}): Promise<EmbeddingServer> {
  const settings = resolveServeOptions(options);
  // Loaded here, not where the package is imported: a program that only embeds never pays for the web stack.
  const [{ default: Fastify }, { default: cors }, { ServerMetrics }] = await Promise.all([import('fastify'), import('@fastify/cors'), import('./metrics.js')]);
  const metrics = new ServerMetrics();
  let state: ServerState = 'loading';
  let loaded: LoadedModel | undefined;
  // Aborted when the grace period is over: the requests still waiting then answer 503.
  const shutdown = new AbortController();

  const connections = new Connections(metrics);
  const app = Fastify({
    logger: settings.logger,
    bodyLimit: settings.maxBodyBytes,
    forceCloseConnections: 'idle',
    serverFactory: (handler) => connections.track(httpServer(settings, handler)),
    // No coercion: a number where a string belongs is an error, not a text.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } },
  });
  acceptOnlyUtf8Json(app);
  if (settings.cors !== undefined) await app.register(cors, { origin: settings.cors === '*' ? true : settings.cors });

  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/health' || settings.apiKey === undefined) return;
    if (!keyMatches(request.headers.authorization, settings.apiKey)) {
      reply.header('www-authenticate', 'Bearer');
      throw new ApiError('unauthorized', 'a valid API key is required: send it as Authorization: Bearer <key>');
    }
  });
  app.addHook('onSend', async (_request, reply) => {
    // While draining, each answer ends its connection, so that closing need not wait for idle keep-alives.
    if (state === 'draining') reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    if (state === 'draining') setImmediate(() => app.server.closeIdleConnections());
  });
  app.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
  app.setNotFoundHandler((request, reply) => replyWithError(new ApiError('not-found', `no route ${request.method} ${request.url}`), request, reply));

  const context = (): ApiContext => ({
    get servedModelName() {
      return loaded?.name ?? settings.servedModelName ?? '';
    },
    maxRequestTexts: settings.maxRequestTexts,
    defaultTask: settings.defaultTask,
    embed: (call, signal) => {
      if (state !== 'serving' || loaded === undefined) {
        throw new ApiError('unavailable', state === 'loading' ? 'the model is still loading' : 'the server is shutting down');
      }
      return runEmbedCall(loaded.embedder, call, AbortSignal.any([signal, shutdown.signal]), loaded.limits).catch((error: unknown) => {
        if (error instanceof CancelledError && shutdown.signal.aborted) throw new ApiError('unavailable', 'the server shut down before this request ran');
        throw error;
      });
    },
  });
  registerOpenAi(app, context());
  registerTei(app, context());
  registerOllama(app, context());

  app.get('/health', async (_request, reply) => {
    reply.code(state === 'serving' ? 200 : 503);
    return { status: state };
  });
  app.get('/info', async () => info(loaded, state, settings));
  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  await app.listen({ host: settings.host, port: settings.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : settings.port;
  const url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}`;

  const ready = Promise.resolve(embedder).then((instance) => {
    // Requests join the embedder's own queue; the service only sets how long an idle queue waits for company.
    const { queue } = instance;
    const unwatch = queue.watch({
      onBatch: (texts, tokens, padded) => metrics.batchRan(texts, tokens, padded),
      onQueue: (texts, tokens) => metrics.queueChanged(texts, tokens),
    });
    const batchWaitMs = queue.batchWaitMs;
    queue.batchWaitMs = settings.batchWaitMs;
    const release = () => {
      unwatch();
      queue.batchWaitMs = batchWaitMs;
    };
    const device = instance.device === undefined ? instance.backend : `${instance.device.vendor} ${instance.device.description}`;
    metrics.backend.set({ backend: instance.backend, device }, 1);
    loaded = { embedder: instance, name: settings.servedModelName ?? instance.modelName, limits: serviceLimits(settings, instance), release };
    if (state === 'loading') state = 'serving';
  });
  // The caller learns of a failed load through `ready`; until then the server answers 503.
  ready.catch(() => undefined);

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    metrics,
    ready,
    get state() {
      return state;
    },
    close(graceMs = 30_000) {
      closing ??= (async () => {
        state = 'draining';
        const closed = app.close();
        connections.dropUnanswerable();
        let timer: NodeJS.Timeout | undefined;
        const graceOver = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
        if ((await Promise.race([closed.then(() => 'closed' as const), graceOver])) === 'timeout') {
          shutdown.abort();
          app.server.closeAllConnections();
          await closed;
        }
        clearTimeout(timer);
        loaded?.release();
        state = 'closed';
      })();
      return closing;
    },
  };
}

/**
 * Node's HTTP server with the service's limits. Node enforces the header and
 * request timeouts only when it checks its connections, every 30 s by
 * default: checked every second here (or more often for shorter timeouts),
 * a slow client is cut off close to its timeout.
 */
function httpServer(settings: ResolvedServeOptions, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer(
    {
      headersTimeout: settings.headersTimeoutMs,
      requestTimeout: settings.requestTimeoutMs,
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(settings.headersTimeoutMs / 4))),
    },
    handler,
  );
  server.maxConnections = settings.maxConnections;
  return server;
}

/**
 * The server's open connections, and on each the request being answered,
 * if any: what a drain keeps (a request whose body has arrived) and what it
 * closes at once (everything else).
 */
class Connections {
  private readonly open = new Set<Socket>();
  private readonly answering = new Map<Socket, IncomingMessage>();

  constructor(private readonly metrics: ServerMetrics) {}

  track(server: Server): Server {
    server.on('connection', (socket: Socket) => {
      this.open.add(socket);
      this.metrics.connections.set(this.open.size);
      socket.once('close', () => {
        this.open.delete(socket);
        this.answering.delete(socket);
        this.metrics.connections.set(this.open.size);
      });
    });
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.answering.set(request.socket, request);
      response.once('close', () => {
        if (this.answering.get(request.socket) === request) this.answering.delete(request.socket);
      });
    });
    server.on('drop', () => this.metrics.refusedConnections.inc());
    // Node answers a client whose headers or body came too late with 408; counted here.
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') this.metrics.timedOut.inc();
      defaultClientError(error, socket);
    });
    return server;
  }

  /** Closes every connection without a request whose body has fully arrived. */
  dropUnanswerable(): void {
    for (const socket of this.open) {
      if (!(this.answering.get(socket)?.complete ?? false)) socket.destroy();
    }
  }
}

/** What Node does for a client error when nobody listens: a 400 (or 408, 431) if it can still write, then close. */
function defaultClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (socket.writable && !socket.writableEnded) {
    const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  }
  socket.destroy();
}

/**
 * JSON bodies as Fastify parses them (prototype poisoning refused), but a
 * body that is not valid UTF-8 is a 400 naming the byte: decoded leniently,
 * its bad bytes would become U+FFFD and be embedded as if they were the text.
 */
function acceptOnlyUtf8Json(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const decoder = new TextDecoder('utf-8', { fatal: true });
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer;
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      done(new ApiError('invalid', `the request body is not valid UTF-8 (from byte ${firstInvalidUtf8Byte(bytes)})`), undefined);
      return;
    }
    parseJson(request, text, done);
  });
}

/** Where the first character that is not UTF-8 starts in `bytes`. */
function firstInvalidUtf8Byte(bytes: Uint8Array): number {
  const decodes = (end: number, stream: boolean) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, end), { stream });
      return true;
    } catch {
      return false;
    }
  };
  // The longest prefix that could still go on as UTF-8 (one that ends inside a character counts)...
  let valid = 0;
  let invalid = bytes.length;
  while (invalid - valid > 1) {
    const middle = (valid + invalid) >>> 1;
    if (decodes(middle, true)) valid = middle;
    else invalid = middle;
  }
  // ...ends at most three bytes into the faulty character.
  let start = valid;
  while (start > 0 && !decodes(start, false)) start--;
  return start;
}

/** Writes an error in the shape of the API whose route failed. */
function replyWithError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply | void {
  // The client has gone: there is no one to answer.
  if (error instanceof CancelledError) return;
  const apiError = toApiError(error);
  if (apiError.kind === 'internal') request.log.error(error);
  const { status, body } = request.url.startsWith('/v1/')
    ? openAiError(apiError)
    : request.url.startsWith('/embed')
      ? teiError(apiError)
      : request.url.startsWith('/api/')
        ? ollamaError(apiError)
        : { status: apiErrorStatus(apiError), body: { error: apiError.message } };
  if (apiError.kind === 'overloaded' || apiError.kind === 'unavailable') reply.header('retry-after', '1');
  return reply.code(status).send(body);
}

function apiErrorStatus(error: ApiError): number {
  return openAiError(error).status;
}

/** Compares in constant time: digests have the same length whatever the key's. */
function keyMatches(header: string | undefined, key: string): boolean {
  const given = /^Bearer (.+)$/i.exec(header ?? '')?.[1] ?? '';
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(key)) && given.length > 0;
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The embedder being served, once loaded: its name, the limits its calls run under, and how to let it go. */
interface LoadedModel {
  readonly embedder: Embedder;
  readonly name: string;
  readonly limits: ServiceLimits;
  readonly release: () => void;
}

function info(loaded: LoadedModel | undefined, state: ServerState, settings: ResolvedServeOptions) {
  const { embedder, name } = loaded ?? {};
  // Until the embedder is loaded, the budgets that default to its backend's are not known yet.
  const limits = {
    max_batch_tokens: loaded?.limits.maxBatchTokens ?? settings.maxBatchTokens ?? null,
    max_batch_size: settings.maxBatchSize,
    max_queue_tokens: loaded?.limits.maxQueueTokens ?? settings.maxQueueTokens ?? null,
    max_request_texts: settings.maxRequestTexts,
    max_body_bytes: settings.maxBodyBytes,
  };
  if (embedder === undefined) return { state, version: VERSION, limits };
  const D = embedder.config.n_embd;
  return {
    state,
    model: name,
    dimensions: D,
    matryoshka_dimensions: D === NOMIC_V15_DIMENSIONS[0] ? [...NOMIC_V15_DIMENSIONS] : 'any from 1 to the full size',
    max_input_length: embedder.tokenizer.maxLength,
    tasks: Object.keys(TASK_PREFIXES),
    default_task: settings.defaultTask ?? null,
    backend: embedder.backend,
    dtype: embedder.dtype,
    device: embedder.device ?? null,
    workers: embedder.workers,
    version: VERSION,
    limits,
  };
}

/** The options with their defaults; the batch budget and the queue's, when not given, once the embedder (and so its backend) is known. */
type ResolvedServeOptions = Required<Omit<ServeOptions, 'apiKey' | 'servedModelName' | 'defaultTask' | 'cors' | 'maxBatchTokens' | 'maxQueueTokens'>> &
  Pick<ServeOptions, 'apiKey' | 'servedModelName' | 'defaultTask' | 'cors' | 'maxBatchTokens' | 'maxQueueTokens'>;

/** The limits every call runs under on `embedder`. */
function serviceLimits(settings: ResolvedServeOptions, embedder: Embedder): ServiceLimits {
  const maxBatchTokens = settings.maxBatchTokens ?? embedder.defaultMaxBatchTokens;
  return { maxBatchTokens, maxBatchSize: settings.maxBatchSize, maxQueueTokens: settings.maxQueueTokens ?? 16 * maxBatchTokens };
}

function resolveServeOptions(options: ServeOptions): ResolvedServeOptions {
  checkOptionNames('serve options', options, SERVE_OPTION_NAMES);
  const resolved = {
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 8080,
    apiKey: options.apiKey,
    servedModelName: options.servedModelName,
    defaultTask: options.defaultTask,
    maxBatchTokens: options.maxBatchTokens,
    maxBatchSize: options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE,
    maxQueueTokens: options.maxQueueTokens,
    maxRequestTexts: options.maxRequestTexts ?? 2048,
    maxBodyBytes: options.maxBodyBytes ?? 32 * 2 ** 20,
    batchWaitMs: options.batchWaitMs ?? 1,
    cors: options.cors,
    logger: options.logger ?? false,
    headersTimeoutMs: options.headersTimeoutMs ?? 10_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 5_000,
    maxConnections: options.maxConnections ?? 512,
  };
  checkInteger('port', resolved.port, 0);
  for (const name of ['maxBatchSize', 'maxRequestTexts', 'maxBodyBytes'] as const) checkInteger(name, resolved[name], 1);
  for (const name of ['maxBatchTokens', 'maxQueueTokens'] as const) if (resolved[name] !== undefined) checkInteger(name, resolved[name], 1);
  checkInteger('batchWaitMs', resolved.batchWaitMs, 0);
  for (const name of ['headersTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'maxConnections'] as const) checkInteger(name, resolved[name], 1);
  if (resolved.headersTimeoutMs > resolved.requestTimeoutMs) {
    throw new InputError('headersTimeoutMs', `${resolved.headersTimeoutMs} is longer than requestTimeoutMs (${resolved.requestTimeoutMs}), which the headers are part of`);
  }
  if (resolved.defaultTask !== undefined && !(resolved.defaultTask in TASK_PREFIXES)) {
    throw new InputError('defaultTask', `unknown task "${resolved.defaultTask}"; use one of ${Object.keys(TASK_PREFIXES).join(', ')}`);
  }
  if (resolved.apiKey !== undefined && resolved.apiKey.length === 0) throw new InputError('apiKey', 'must not be empty');
  return resolved;
}
