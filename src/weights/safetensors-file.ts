import { closeSync, fstatSync, openSync, read, readSync, writeSync } from 'node:fs';
import { SafetensorsError } from '../errors.js';
import { encodeSafetensors, type EncodedSafetensors } from './safetensors-encode.js';
import { SafetensorsFile, type ByteSource, type TensorSpec, type TensorToWrite } from './safetensors.js';

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
  writeChunks(path, encodeSafetensors(path, specs, data, metadata));
}

/** Writes encoded safetensors to `path`, chunk by chunk. */
export function writeChunks(path: string, encoded: EncodedSafetensors): void {
  const fd = openSync(path, 'w');
  try {
    for (const chunk of encoded.chunks()) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}
