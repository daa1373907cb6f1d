import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * NumPy `.npy` (format 1.0) for [N, D] matrices of float32, int8 or uint8
 * (quantized embeddings: `|i1` and `|u1`). The header is padded to a fixed
 * size, so a file can be started before N is known and the header rewritten
 * in place at the end.
 */
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00]);
/** Header bytes including magic and length field: room for any N below 10^20. */
const HEADER_SIZE = 128;

export type NpyDtype = '<f4' | '|i1' | '|u1';
export type NpyRow = Float32Array | Int8Array | Uint8Array;

export function dtypeOf(row: NpyRow): NpyDtype {
  return row instanceof Float32Array ? '<f4' : row instanceof Int8Array ? '|i1' : '|u1';
}

export function npyHeader(rows: number, columns: number, dtype: NpyDtype = '<f4'): Buffer {
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${rows}, ${columns}), }`;
  const padded = dict.padEnd(HEADER_SIZE - MAGIC.length - 2 - 1, ' ') + '\n';
  const length = Buffer.alloc(2);
  length.writeUInt16LE(padded.length);
  return Buffer.concat([MAGIC, length, Buffer.from(padded, 'latin1')]);
}

export function npyBody(vectors: readonly NpyRow[]): Buffer {
  const body = Buffer.alloc(vectors.reduce((n, v) => n + v.byteLength, 0));
  let offset = 0;
  for (const v of vectors) {
    body.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), offset);
    offset += v.byteLength;
  }
  return body;
}

/** Rewrites the header of a file begun with a placeholder header. */
export function finishNpyFile(path: string, rows: number, columns: number, dtype: NpyDtype = '<f4'): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, npyHeader(rows, columns, dtype), 0, HEADER_SIZE, 0);
  } finally {
    closeSync(fd);
  }
}

export interface NpyMatrix {
  readonly shape: [number, number];
  readonly dtype: NpyDtype;
  /** Row-major, a view of the file's bytes where alignment allows. */
  readonly data: Float32Array | Int8Array | Uint8Array;
}

/** Parses an [N, D] .npy buffer of float32, int8 or uint8; throws naming what it cannot read. */
export function readNpy(buffer: Buffer): NpyMatrix {
  if (buffer.length < 10 || !buffer.subarray(0, 6).equals(MAGIC.subarray(0, 6))) throw new Error('not an .npy file');
  const headerLength = buffer.readUInt16LE(8);
  const header = buffer.subarray(10, 10 + headerLength).toString('latin1');
  const shape = /'shape': \((\d+), (\d+)\)/.exec(header);
  const descr = /'descr': '([<|>][a-z]\d)'/.exec(header)?.[1];
  if (shape === null || /'fortran_order': True/.test(header)) throw new Error(`not a row-major two-dimensional .npy: ${header.trim()}`);
  if (descr !== '<f4' && descr !== '|i1' && descr !== '|u1') throw new Error(`.npy dtype ${descr ?? '(none)'} is not float32, int8 or uint8`);
  const [rows, columns] = [Number(shape[1]), Number(shape[2])];
  const start = 10 + headerLength;
  const size = rows * columns * (descr === '<f4' ? 4 : 1);
  if (buffer.length - start < size) throw new Error(`the .npy file holds ${buffer.length - start} bytes of data, its shape needs ${size}`);
  const bytes = buffer.subarray(start, start + size);
  // A Float32Array view needs 4-byte alignment; this writer's header keeps it, others may not.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : Buffer.from(bytes);
  const data =
    descr === '<f4'
      ? new Float32Array(aligned.buffer, aligned.byteOffset, rows * columns)
      : descr === '|i1'
        ? new Int8Array(bytes.buffer, bytes.byteOffset, size)
        : new Uint8Array(bytes.buffer, bytes.byteOffset, size);
  return { shape: [rows, columns], dtype: descr, data };
}
