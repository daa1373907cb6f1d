import type { Embedder } from '../embedder.js';
import type { Precision } from '../pipeline/quantize.js';
import type { LongText, Task } from '../pipeline/tokenizer.js';
import { ApiError } from './api-error.js';

/** One request for embeddings, whichever API it came through. */
export interface EmbedCall {
  readonly texts: readonly string[];
  readonly task: string | undefined;
  readonly dimensions: number | undefined;
  readonly normalize: boolean;
  /** Cut texts longer than the maximum length, or refuse them. */
  readonly truncate: boolean;
  /** Quantized outputs (an extension of every API): int8/uint8 over the unit-vector ranges, binary, ubinary. */
  readonly precision?: string;
  /** Texts longer than the maximum length (an extension of every API): `truncate` (as `truncate` says) or `mean` of windows. */
  readonly longText?: string;
  /** int8/uint8: texts whose embeddings give each dimension's range (an extension of every API). */
  readonly calibration?: readonly string[];
}

export interface EmbedCallResult {
  readonly vectors: (Float32Array | Int8Array | Uint8Array)[];
  /** Tokens the model read, [CLS] and [SEP] included, after truncation. */
  readonly tokens: number;
}

/** The fields every API takes beside its own (extensions: none of the three has them). */
export interface ExtensionFields {
  /** float32 (the default), int8, uint8, binary or ubinary. */
  precision?: string;
  /** `truncate` (the API's own `truncate` rule) or `mean`: a long text embeds as the mean of its windows. */
  long_text?: string;
  /** int8/uint8: texts whose embeddings give each dimension's range, instead of the unit-vector ranges. */
  calibration?: string[];
}

/** Their JSON schema, for each API's body schema. */
export const EXTENSION_SCHEMA = {
  precision: { type: 'string' },
  long_text: { type: 'string' },
  calibration: { type: 'array', items: { type: 'string' }, minItems: 1 },
} as const;

/** The extension fields of a body, as the call's. */
export function extensionsOf(body: ExtensionFields): Pick<EmbedCall, 'precision' | 'longText' | 'calibration'> {
  return { precision: body.precision, longText: body.long_text, calibration: body.calibration };
}

/**
 * The texts of an `input` field: a string or an array of strings. Token id
 * arrays (which the OpenAI API also accepts) are refused: they would be ids of
 * another tokenizer.
 */
export function readTexts(input: unknown, param: string, maxTexts: number): string[] {
  const isIds = (x: unknown) => Array.isArray(x) && x.length > 0 && x.every((v) => Number.isInteger(v));
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) {
    throw new ApiError(input === undefined ? 'empty' : 'invalid', `${param} must be a string or an array of strings`, param);
  }
  if (input.length === 0) throw new ApiError('empty', `${param} is empty: send at least one text`, param);
  if (isIds(input) || input.some(isIds)) {
    throw new ApiError('invalid', `${param} holds token ids, which this server does not take (they would be another tokenizer's); send the texts`, param);
  }
  if (input.length > maxTexts) {
    throw new ApiError('too-large', `${param} holds ${input.length} texts, more than the limit of ${maxTexts} per request`, param);
  }
  input.forEach((text, i) => {
    if (typeof text !== 'string') throw new ApiError('invalid', `${param}[${i}] must be a string, got ${text === null ? 'null' : typeof text}`, `${param}[${i}]`);
  });
  return input as string[];
}

/** What the service applies to every call: its batch limits and its queue's back-pressure. */
export interface ServiceLimits {
  readonly maxBatchTokens: number;
  readonly maxBatchSize: number;
  readonly maxQueueTokens: number;
}

/**
 * Runs a call through the embedder's own `embed`, and so through its one
 * queue: the options are checked there (an invalid one is an `InputError`,
 * a 400), and texts of concurrent requests, and of the embedder's other
 * callers, share forward batches.
 */
export async function runEmbedCall(embedder: Embedder, call: EmbedCall, signal: AbortSignal, limits: ServiceLimits): Promise<EmbedCallResult> {
  call.texts.forEach((text, i) => {
    if (text.length === 0) throw new ApiError('empty', `input[${i}] is an empty string`, `input[${i}]`);
  });
  const { embeddings, stats } = await embedder.embed(call.texts, {
    task: call.task as Task | undefined,
    dimensions: call.dimensions,
    normalize: call.normalize,
    truncation: call.truncate ? 'truncate' : 'error',
    longText: call.longText as LongText | undefined,
    precision: call.precision as Precision | undefined,
    calibration: call.calibration,
    maxBatchTokens: limits.maxBatchTokens,
    maxBatchSize: limits.maxBatchSize,
    maxQueueTokens: limits.maxQueueTokens,
    signal,
  });
  return { vectors: embeddings, tokens: stats.tokens };
}
