import { closeSync, fstatSync, openSync, read, readSync, writeSync } from 'node:fs';
import { SafetensorsError } from '../errors.js';
import { f32ToBf16, f32ToF16 } from './half-float.js';
import { DTYPE_SIZES, SafetensorsFile, type ByteSource, type StorageDtype, type TensorSpec, type TensorToWrite } from './safetensors.js';

/**
 * Safetensors files in Node: the reader over a file descriptor, and the
 * writer. The format itself, and reading bytes in memory, are in
 * `safetensors.ts`, which runs anywhere.
 */

/**
 * Opens and validates a checkpoint file; throws {@link SafetensorsError}
 * naming the fault. The file stays open and is read one tensor at a time.
 */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    throw new SafetensorsError(path, `cannot open: ${(cause as Error).message}`);
  }
  let source: FileSource;
  try {
    source = new FileSource(fd);
  } catch (cause) {
    closeSync(fd);
    throw new SafetensorsError(path, `cannot read its size: ${(cause as Error).message}`);
  }
  return SafetensorsFile.fromSource(path, source);
}

class FileSource implements ByteSource {
  readonly size: number;
  private fd: number | undefined;

  constructor(fd: number) {
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  read(into: Uint8Array, offset: number, length: number, position: number): number {
    return readSync(this.openFd(), into, offset, length, position);
  }

  readAsync(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const fd = this.openFd();
    return new Promise((resolve, reject) =>
      read(fd, into, offset, length, position, (error, count) => (error ? reject(error) : resolve(count))),
    );
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error('closed');
    return this.fd;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Writes tensors (float32 data, stored as each one's `dtype`) in the given order. */
export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>> = {},
): void {
  writeSafetensorsStream(path, tensors, tensors.map((t) => t.data), metadata);
}

/**
 * Writes the header from `specs`, then each tensor's data as `data` yields it,
 * so a converter never holds more than one tensor in memory.
 */
export function writeSafetensorsStream(
  path: string,
  specs: readonly TensorSpec[],
  data: Iterable<Float32Array | Int8Array>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of specs) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, length);
    writeSync(fd, json);
    let index = 0;
    for (const values of data) {
      const spec = specs[index++];
      const expected = spec?.shape.reduce((a, b) => a * b, 1);
      if (spec === undefined || values.length !== expected) {
        throw new SafetensorsError(path, `data for tensor ${index - 1} does not match its header entry`, spec?.name);
      }
      // Codes are stored as they are and floats converted: neither is ever taken for the other.
      if ((spec.dtype === 'I8') !== values instanceof Int8Array) {
        throw new SafetensorsError(path, `data for ${spec.dtype} must be ${spec.dtype === 'I8' ? 'an Int8Array' : 'a Float32Array'}`, spec.name);
      }
      const encoded = encode(spec.dtype, values);
      writeSync(fd, new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength));
    }
    if (index !== specs.length) throw new SafetensorsError(path, `got data for ${index} of ${specs.length} tensors`);
  } finally {
    closeSync(fd);
  }
}

function encode(dtype: StorageDtype, data: Float32Array | Int8Array): Float32Array | Uint16Array | Int8Array {
  if (data instanceof Int8Array) return data;
  switch (dtype) {
    case 'F32':
      return data;
    case 'F16':
      return f32ToF16(data);
    case 'BF16':
      return f32ToBf16(data);
    case 'I8':
      throw new TypeError('unreachable: I8 data is checked to be an Int8Array');
  }
}
