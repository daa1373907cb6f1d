import * as errors from '../errors.js';
import { NomicEmbedError, WorkerError } from '../errors.js';

/**
 * Errors cross from a worker thread as plain data (structured clone keeps
 * neither class nor own fields of an Error). This package's errors are rebuilt
 * as the same class with the same fields, so a caller sees the same error
 * with `workers: 2` as with `workers: 1`.
 */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  /** The error's own enumerable fields that survive structured cloning. */
  readonly fields: Record<string, unknown>;
}

export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), stack: undefined, fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key !== 'name' && isCloneable(value)) fields[key] = value;
  }
  return { name: error.name, message: error.message, stack: error.stack, fields };
}

/** Every error class of this package, by name (each class's `name` is its own). */
const CLASSES = new Map<string, typeof NomicEmbedError>(
  Object.values(errors)
    .filter((value): value is typeof NomicEmbedError => typeof value === 'function' && (value === NomicEmbedError || value.prototype instanceof NomicEmbedError))
    .map((cls) => [cls.name, cls]),
);

export function deserializeError(data: SerializedError): Error {
  const cls = CLASSES.get(data.name);
  // The constructors build messages from their arguments; here the message is already made.
  const error =
    cls === undefined
      ? new WorkerError(`${data.name} in a worker thread: ${data.message}`, 'thrown', data.name)
      : (Object.create(cls.prototype) as Error);
  if (cls !== undefined) {
    Object.defineProperty(error, 'message', { value: data.message, writable: true, configurable: true });
    Object.assign(error, { name: data.name }, data.fields);
  }
  if (data.stack !== undefined) Object.defineProperty(error, 'stack', { value: data.stack, writable: true, configurable: true });
  return error;
}

function isCloneable(value: unknown): boolean {
  if (value === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof value)) return true;
  if (Array.isArray(value)) return value.every(isCloneable);
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) return Object.values(value as object).every(isCloneable);
  return false;
}
