import { resolveOutputOptions } from '../embed-options.js';
import type { Embedder } from '../embedder.js';
import { finishVector } from '../pipeline/finish-vector.js';
import { PRECISIONS, quantize, unitVectorRanges, type Precision } from '../pipeline/quantize.js';
import type { Task } from '../pipeline/tokenizer.js';
import { ApiError } from './api-error.js';
import type { EmbeddingScheduler } from './scheduler.js';

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
}

export interface EmbedCallResult {
  readonly vectors: (Float32Array | Int8Array | Uint8Array)[];
  /** Tokens the model read, [CLS] and [SEP] included, after truncation. */
  readonly tokens: number;
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

/** Validates a call, tokenizes it, runs it through the scheduler, and finishes each vector as it asks. */
export async function runEmbedCall(
  embedder: Embedder,
  scheduler: EmbeddingScheduler,
  call: EmbedCall,
  signal: AbortSignal,
): Promise<EmbedCallResult> {
  call.texts.forEach((text, i) => {
    if (text.length === 0) throw new ApiError('empty', `input[${i}] is an empty string`, `input[${i}]`);
  });
  const { output, task, truncation } = resolveOutputOptions(
    { task: call.task as Task | undefined, dimensions: call.dimensions, normalize: call.normalize, truncation: call.truncate ? 'truncate' : 'error' },
    embedder.config.n_embd,
  );
  const precision = (call.precision ?? 'float32') as Precision;
  if (!PRECISIONS.includes(precision)) throw new ApiError('invalid', `unknown precision "${precision}"; use one of ${PRECISIONS.join(', ')}`, 'precision');
  if ((precision === 'int8' || precision === 'uint8') && !output.normalize) {
    throw new ApiError('invalid', `${precision} needs normalised vectors here (its ranges suit unit vectors)`, 'precision');
  }
  const ranges = unitVectorRanges(output.dimensions);
  const sequences = call.texts.map((text, i) => embedder.tokenizer.encode(text, task, truncation, i).ids);
  const pooled = await scheduler.submit(sequences, signal);
  return {
    vectors: pooled.map((vector) => quantize(finishVector(vector, output), precision, ranges)),
    tokens: sequences.reduce((sum, ids) => sum + ids.length, 0),
  };
}
