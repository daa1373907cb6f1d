import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * NumPy `.npy` (format 1.0) writing for float32 [N, D] matrices. The header is
 * padded to a fixed size, so a file can be started before N is known and the
 * header rewritten in place at the end.
 */
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00]);
/** Header bytes including magic and length field: room for any N below 10^20. */
const HEADER_SIZE = 128;

export function npyHeader(rows: number, columns: number): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${columns}), }`;
  const padded = dict.padEnd(HEADER_SIZE - MAGIC.length - 2 - 1, ' ') + '\n';
  const length = Buffer.alloc(2);
  length.writeUInt16LE(padded.length);
  return Buffer.concat([MAGIC, length, Buffer.from(padded, 'latin1')]);
}

export function npyBody(vectors: readonly Float32Array[]): Buffer {
  const body = Buffer.alloc(vectors.reduce((n, v) => n + v.byteLength, 0));
  let offset = 0;
  for (const v of vectors) {
    body.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), offset);
    offset += v.byteLength;
  }
  return body;
}

/** Rewrites the header of a file begun with a placeholder header. */
export function finishNpyFile(path: string, rows: number, columns: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, npyHeader(rows, columns), 0, HEADER_SIZE, 0);
  } finally {
    closeSync(fd);
  }
}

/** Parses a float32 [N, D] .npy buffer (for tests and tools). */
export function readNpy(buffer: Buffer): { shape: [number, number]; data: Float32Array } {
  if (!buffer.subarray(0, 6).equals(MAGIC.subarray(0, 6))) throw new Error('not an .npy file');
  const headerLength = buffer.readUInt16LE(8);
  const header = buffer.subarray(10, 10 + headerLength).toString('latin1');
  const match = /'shape': \((\d+), (\d+)\)/.exec(header);
  if (match === null || !header.includes("'<f4'")) throw new Error(`unsupported .npy header: ${header}`);
  const start = 10 + headerLength;
  const bytes = buffer.subarray(start);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { shape: [Number(match[1]), Number(match[2])], data };
}
