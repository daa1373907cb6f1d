import { NomicEmbedError } from '../errors.js';
import type { EmbedOptions } from '../pipeline/embed-options.js';
import type { Precision } from '../pipeline/quantize.js';

/**
 * What `submit` puts on the queue and workers give back. Both sides check
 * the version: a worker meeting another version fails the job with a clear
 * message rather than guess at its fields.
 */
export const JOB_FORMAT_VERSION = 1;

/**
 * The embed options a job carries, checked by the worker's `embed` as any
 * call's; the worker's model and backend are its own. Only what survives
 * JSON: `ranges` (int8/uint8) as arrays, so that every chunk of an input is
 * quantized alike (calibration per chunk would give each its own ranges).
 * `truncation: 'error'` fails a chunk holding a text longer than the
 * worker's maximum length.
 */
export type ChunkOptions = Pick<EmbedOptions<Precision>, 'task' | 'dimensions' | 'normalize' | 'pooling' | 'truncation' | 'longText' | 'overlap' | 'precision'> & {
  readonly ranges?: { readonly min: readonly number[]; readonly max: readonly number[] };
};

export interface ChunkJob {
  readonly version: number;
  /** Which input (hash of the file and the options) the chunk belongs to. */
  readonly input: string;
  readonly chunk: number;
  /** Line of the input file the chunk's first text is on, from 1. */
  readonly firstLine: number;
  readonly texts: readonly string[];
  readonly options: ChunkOptions;
}

/** A chunk's vectors: rows of `columns` values, packed little-endian as they lie in memory, base64 in JSON. */
export interface ChunkResult {
  readonly version: number;
  readonly rows: number;
  readonly columns: number;
  readonly dtype: '<f4' | '|i1' | '|u1';
  readonly data: string;
}

export class JobFormatError extends NomicEmbedError {
  override name = 'JobFormatError';
  constructor(readonly found: unknown) {
    super(`job format version ${JSON.stringify(found)}, but this worker reads version ${JOB_FORMAT_VERSION}; run workers and submit of the same release`);
  }
}

export function checkVersion(data: { version?: unknown } | null | undefined): void {
  if (data?.version !== JOB_FORMAT_VERSION) throw new JobFormatError(data?.version);
}

export function encodeResult(vectors: readonly (Float32Array | Int8Array | Uint8Array)[]): ChunkResult {
  const first = vectors[0];
  const dtype = first instanceof Int8Array ? '|i1' : first instanceof Uint8Array ? '|u1' : '<f4';
  const bytes = Buffer.concat(vectors.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
  return { version: JOB_FORMAT_VERSION, rows: vectors.length, columns: first?.length ?? 0, dtype, data: bytes.toString('base64') };
}

/** The rows of a result as typed arrays (copies, aligned). */
export function decodeResult(result: ChunkResult): (Float32Array | Int8Array | Uint8Array)[] {
  checkVersion(result);
  const bytes = Buffer.from(result.data, 'base64');
  const width = result.columns * (result.dtype === '<f4' ? 4 : 1);
  if (bytes.length !== result.rows * width) throw new Error(`a chunk result holds ${bytes.length} bytes, its ${result.rows} × ${result.columns} rows need ${result.rows * width}`);
  return Array.from({ length: result.rows }, (_, r) => {
    const row = Uint8Array.prototype.slice.call(bytes, r * width, (r + 1) * width);
    return result.dtype === '<f4' ? new Float32Array(row.buffer) : result.dtype === '|i1' ? new Int8Array(row.buffer) : row;
  });
}
