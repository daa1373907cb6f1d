import type { FastifyInstance } from 'fastify';
import { ApiError, STATUS } from '../api-error.js';
import { EXTENSION_SCHEMA, extensionsOf, readTexts, type ExtensionFields } from '../embed-call.js';
import type { ApiContext } from './context.js';
import { abortOnClose } from './abort.js';

/** The OpenAI embeddings API: `POST /v1/embeddings`. */
export function registerOpenAi(app: FastifyInstance, context: ApiContext): void {
  app.post<{ Body: OpenAiBody }>('/v1/embeddings', { schema: { body: BODY } }, async (request, reply) => {
    const body = request.body;
    if (body.model !== undefined && body.model !== context.servedModelName) {
      throw new ApiError('model-not-found', `The model \`${body.model}\` does not exist; this server serves \`${context.servedModelName}\``, 'model');
    }
    const { vectors, tokens } = await context.embed(
      {
        texts: readTexts(body.input, 'input', context.maxRequestTexts),
        task: body.task ?? context.defaultTask,
        dimensions: body.dimensions,
        normalize: body.normalize ?? true,
        truncate: body.truncate ?? false,
        ...extensionsOf(body),
      },
      abortOnClose(reply),
    );
    const base64 = body.encoding_format === 'base64';
    return {
      object: 'list',
      data: vectors.map((vector, index) => ({ object: 'embedding', index, embedding: base64 ? toBase64(vector) : Array.from(vector) })),
      model: context.servedModelName,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
}

interface OpenAiBody extends ExtensionFields {
  input: unknown;
  model?: string;
  dimensions?: number;
  encoding_format?: 'float' | 'base64';
  user?: string;
  /** Extensions: Nomic's task prefix, normalisation, truncation of long texts (refused by default, as OpenAI does). */
  task?: string;
  normalize?: boolean;
  truncate?: boolean;
}

const BODY = {
  type: 'object',
  required: ['input'],
  properties: {
    input: {},
    model: { type: 'string' },
    dimensions: { type: 'integer' },
    encoding_format: { type: 'string', enum: ['float', 'base64'] },
    user: { type: 'string' },
    task: { type: 'string' },
    normalize: { type: 'boolean' },
    truncate: { type: 'boolean' },
    ...EXTENSION_SCHEMA,
  },
} as const;

/**
 * A vector's bytes in base64, as OpenAI sends `encoding_format: "base64"`:
 * little-endian float32, or the bytes themselves when quantized.
 */
export function toBase64(vector: Float32Array | Int8Array | Uint8Array): string {
  if (!(vector instanceof Float32Array)) return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString('base64');
}

/** OpenAI's error shape: `{ error: { message, type, param, code } }`. */
export function openAiError(error: ApiError): { status: number; body: unknown } {
  const [type, code] = ((): [string, string | null] => {
    switch (error.kind) {
      case 'unauthorized':
        return ['invalid_request_error', 'invalid_api_key'];
      case 'model-not-found':
        return ['invalid_request_error', 'model_not_found'];
      case 'too-long':
        return ['invalid_request_error', 'context_length_exceeded'];
      case 'overloaded':
        return ['rate_limit_error', 'rate_limit_exceeded'];
      case 'unavailable':
      case 'internal':
        return ['server_error', null];
      default:
        return ['invalid_request_error', null];
    }
  })();
  return { status: STATUS[error.kind], body: { error: { message: error.message, type, param: error.param ?? null, code } } };
}
