import { InputError, NomicEmbedError, OutOfMemoryError, QueueFullError, RequestTooLargeError, TextTooLongError } from '../errors.js';

/**
 * What went wrong with a request, independent of the API it came through:
 * each API (OpenAI, TEI, Ollama) writes it in its own shape.
 */
export type ApiErrorKind =
  | 'invalid' // 400: a malformed body or an invalid value
  | 'empty' // 400: no texts
  | 'unauthorized' // 401
  | 'model-not-found' // 404
  | 'not-found' // 404: no such route
  | 'too-large' // 413: body, text count or tokens over a limit
  | 'too-long' // a text over the maximum length, truncation refused (400, or 413 for TEI)
  | 'overloaded' // 429
  | 'unavailable' // 503: loading or draining
  | 'internal'; // 500

export class ApiError extends NomicEmbedError {
  override name = 'ApiError';
  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    /** The request field at fault, where there is one. */
    readonly param?: string,
  ) {
    super(message);
  }
}

export const STATUS: Readonly<Record<ApiErrorKind, number>> = {
  invalid: 400,
  empty: 400,
  unauthorized: 401,
  'model-not-found': 404,
  'not-found': 404,
  'too-large': 413,
  'too-long': 400,
  overloaded: 429,
  unavailable: 503,
  internal: 500,
};

/** Any error a handler or Fastify raised, as an {@link ApiError}. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof QueueFullError) return new ApiError('overloaded', error.message);
  if (error instanceof RequestTooLargeError) return new ApiError('too-large', error.message);
  if (error instanceof TextTooLongError) return new ApiError('too-long', error.message, 'input');
  if (error instanceof InputError) return new ApiError('invalid', error.message, error.argument);
  if (error instanceof OutOfMemoryError) return new ApiError('too-large', error.message, 'input');
  const fastify = error as { code?: string; statusCode?: number; validation?: unknown; message?: string };
  if (fastify.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ApiError('too-large', 'the request body is larger than the server accepts');
  if (fastify.validation !== undefined) return new ApiError('invalid', `invalid request: ${fastify.message}`);
  if (fastify.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) {
    return new ApiError('invalid', `the request body is not valid JSON: ${fastify.message}`);
  }
  if (fastify.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new ApiError('invalid', 'the request body is empty');
  if (fastify.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new ApiError('invalid', 'send the request body as application/json');
  if (typeof fastify.statusCode === 'number' && fastify.statusCode >= 400 && fastify.statusCode < 500) {
    return new ApiError('invalid', fastify.message ?? 'bad request');
  }
  return new ApiError('internal', error instanceof Error ? error.message : String(error));
}
