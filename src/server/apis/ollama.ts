import type { FastifyInstance } from 'fastify';
import { ApiError, STATUS } from '../api-error.js';
import { EXTENSION_SCHEMA, extensionsOf, readTexts, type ExtensionFields } from '../embed-call.js';
import type { ApiContext } from './context.js';
import { abortOnClose } from './abort.js';

/** Ollama's API: `POST /api/embed`. */
export function registerOllama(app: FastifyInstance, context: ApiContext): void {
  app.post<{ Body: OllamaBody }>('/api/embed', { schema: { body: BODY } }, async (request, reply) => {
    const started = process.hrtime.bigint();
    const body = request.body;
    // Ollama names models with a tag; the served name matches with or without `:latest`.
    if (body.model !== undefined && body.model.replace(/:latest$/, '') !== context.servedModelName) {
      throw new ApiError('model-not-found', `model "${body.model}" not found; this server serves "${context.servedModelName}"`, 'model');
    }
    const { vectors, tokens } = await context.embed(
      {
        texts: readTexts(body.input, 'input', context.maxRequestTexts),
        task: body.task ?? context.defaultTask,
        dimensions: body.dimensions,
        normalize: true,
        truncate: body.truncate ?? true,
        ...extensionsOf(body),
      },
      abortOnClose(reply),
    );
    return {
      model: body.model ?? context.servedModelName,
      embeddings: vectors.map((v) => Array.from(v)),
      total_duration: Number(process.hrtime.bigint() - started),
      // The model is loaded once, at start: no request waits for it.
      load_duration: 0,
      prompt_eval_count: tokens,
    };
  });
}

interface OllamaBody extends ExtensionFields {
  model?: string;
  input: unknown;
  truncate?: boolean;
  dimensions?: number;
  options?: object;
  keep_alive?: string | number;
  /** Extension: Nomic's task prefix. */
  task?: string;
}

const BODY = {
  type: 'object',
  required: ['input'],
  properties: {
    model: { type: 'string' },
    input: {},
    truncate: { type: 'boolean' },
    dimensions: { type: 'integer' },
    options: { type: 'object' },
    keep_alive: { anyOf: [{ type: 'string' }, { type: 'number' }] },
    task: { type: 'string' },
    ...EXTENSION_SCHEMA,
  },
} as const;

/** Ollama's error shape: `{ error }`. */
export function ollamaError(error: ApiError): { status: number; body: unknown } {
  return { status: STATUS[error.kind], body: { error: error.message } };
}
