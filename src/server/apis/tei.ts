import type { FastifyInstance } from 'fastify';
import { STATUS, type ApiError } from '../api-error.js';
import { EXTENSION_SCHEMA, extensionsOf, readTexts, type ExtensionFields } from '../embed-call.js';
import type { ApiContext } from './context.js';
import { abortOnClose } from './abort.js';

/** Hugging Face text-embeddings-inference's API: `POST /embed`. */
export function registerTei(app: FastifyInstance, context: ApiContext): void {
  app.post<{ Body: TeiBody }>('/embed', { schema: { body: BODY } }, async (request, reply) => {
    const body = request.body;
    const { vectors } = await context.embed(
      {
        texts: readTexts(body.inputs, 'inputs', context.maxRequestTexts),
        task: body.prompt_name ?? context.defaultTask,
        dimensions: body.dimensions,
        normalize: body.normalize ?? true,
        truncate: body.truncate ?? false,
        ...extensionsOf(body),
      },
      abortOnClose(reply),
    );
    return vectors.map((v) => Array.from(v));
  });
}

interface TeiBody extends ExtensionFields {
  inputs: unknown;
  normalize?: boolean;
  truncate?: boolean;
  truncation_direction?: string;
  dimensions?: number;
  /** A task prefix (TEI's prompts): search_query, search_document, clustering, classification. */
  prompt_name?: string;
}

const BODY = {
  type: 'object',
  required: ['inputs'],
  properties: {
    inputs: {},
    normalize: { type: 'boolean' },
    truncate: { type: 'boolean' },
    truncation_direction: { type: 'string', enum: ['Right', 'right'] },
    dimensions: { type: 'integer' },
    prompt_name: { type: 'string' },
    ...EXTENSION_SCHEMA,
  },
} as const;

/** TEI's error shape `{ error, error_type }`; as TEI, an over-long text is a validation error, 413. */
export function teiError(error: ApiError): { status: number; body: unknown } {
  const types: Partial<Record<ApiError['kind'], string>> = {
    empty: 'empty',
    overloaded: 'overloaded',
    unavailable: 'unhealthy',
    internal: 'backend',
    unauthorized: 'unauthorized',
  };
  const status = error.kind === 'too-long' ? 413 : STATUS[error.kind];
  return { status, body: { error: error.message, error_type: types[error.kind] ?? 'validation' } };
}
