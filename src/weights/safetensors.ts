import { SafetensorsError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from './half-float.js';

/**
 * A strict reader and a small writer for the safetensors format
 * (8-byte little-endian header length, JSON header, raw little-endian data).
 *
 * The reader keeps the file open and reads one tensor at a time straight into a
 * fresh, aligned typed array, so a 550 MB checkpoint never sits in memory twice.
 * It reads bytes already in memory (a download) the same way, behind the same
 * interface.
 */

/** Bytes per element of every dtype the format defines; the float ones and I8 (q8 codes) are readable. */
export const DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

export type FloatDtype = 'F32' | 'F16' | 'BF16';
/** What the writer stores: floats from float32 data, or int8 codes as they are. */
export type StorageDtype = FloatDtype | 'I8';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Byte offsets relative to the start of the data section. */
  readonly begin: number;
  readonly end: number;
}

/** Refuses absurd headers before parsing them; real headers are tens of KB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Where a checkpoint's bytes come from: a file in Node, or bytes already in
 * memory (a fetched response, a Blob's buffer). Reads return how many bytes
 * they copied, 0 at the end.
 */
export interface ByteSource {
  readonly size: number;
  read(into: Uint8Array, offset: number, length: number, position: number): number;
  readAsync(into: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  close(): void;
  readonly closed: boolean;
}

class MemorySource implements ByteSource {
  private bytes: Uint8Array | undefined;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  get size(): number {
    return this.bytes?.length ?? 0;
  }

  get closed(): boolean {
    return this.bytes === undefined;
  }

  read(into: Uint8Array, offset: number, length: number, position: number): number {
    if (this.bytes === undefined) throw new Error('closed');
    const slice = this.bytes.subarray(position, position + length);
    into.set(slice, offset);
    return slice.length;
  }

  async readAsync(into: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.read(into, offset, length, position);
  }

  /** Lets go of the bytes, so a caller's reference is the only one left. */
  close(): void {
    this.bytes = undefined;
  }
}

export class SafetensorsFile {
  private constructor(
    /** The file's path, or the label given to bytes in memory (a URL): what errors name. */
    readonly path: string,
    private readonly source: ByteSource,
    private readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /**
   * Validates a checkpoint held in memory, e.g. a fetched response's body;
   * `label` (its URL) is what errors name. The bytes are read in place, never
   * copied whole: each tensor is copied out once, as from a file.
   */
  static fromBytes(bytes: ArrayBuffer | ArrayBufferView, label: string): SafetensorsFile {
    const view = ArrayBuffer.isView(bytes)
      ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      : new Uint8Array(bytes);
    return SafetensorsFile.fromSource(label, new MemorySource(view));
  }

  /** As {@link fromBytes}, for a Blob (a cached or downloaded file in a browser). */
  static async fromBlob(blob: Blob, label: string): Promise<SafetensorsFile> {
    return SafetensorsFile.fromBytes(await blob.arrayBuffer(), label);
  }

  /** Validates the checkpoint `source` holds (see `openSafetensors` for a file); closes the source if it is malformed. */
  static fromSource(path: string, source: ByteSource): SafetensorsFile {
    try {
      const { dataStart, tensors, metadata } = parseHeader(path, source);
      return new SafetensorsFile(path, source, dataStart, tensors, metadata);
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /** Reads one tensor as float32 (F16 and BF16 are widened). */
  readFloat32(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(this.path, 'no such tensor', name);
    const bytes = this.readBytes(info);
    switch (info.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      case 'F16':
        return f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
      case 'BF16':
        return bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2));
      default:
        throw new SafetensorsError(
          this.path,
          `dtype ${info.dtype} is not a float type; only F32, F16 and BF16 weights are supported`,
          name,
        );
    }
  }

  /**
   * Reads one tensor into `target` (as many float32 values as it holds):
   * straight from the file for F32, widened for F16 and BF16. The target may
   * be a view of backend memory, so an upload needs no copy of its own.
   */
  readFloat32Into(name: string, target: Float32Array): void {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(this.path, 'no such tensor', name);
    if (info.dtype !== 'F32') return void target.set(this.readFloat32(name));
    this.readBytes(info, this.bytesOfTarget(info, target));
  }

  /**
   * As {@link readFloat32Into}, on one of Node's I/O threads, so this thread
   * is free meanwhile. `target` must stay valid until the promise settles,
   * and the file open. Other dtypes are converted here, synchronously.
   */
  async readFloat32IntoAsync(name: string, target: Float32Array): Promise<void> {
    const info = this.tensors.get(name);
    if (info?.dtype !== 'F32') return this.readFloat32Into(name, target);
    await this.readBytesAsync(info, this.bytesOfTarget(info, target));
  }

  /** Reads an I8 tensor (q8 codes) into `target`, which holds exactly its bytes. */
  readInt8Into(name: string, target: Int8Array): void {
    this.readBytes(this.int8Info(name, target), new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
  }

  /** As {@link readInt8Into}, on one of Node's I/O threads; `target` must stay valid until the promise settles. */
  async readInt8IntoAsync(name: string, target: Int8Array): Promise<void> {
    await this.readBytesAsync(this.int8Info(name, target), new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
  }

  private int8Info(name: string, target: Int8Array): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(this.path, 'no such tensor', name);
    if (info.dtype !== 'I8') throw new SafetensorsError(this.path, `dtype ${info.dtype} where int8 codes (I8) were expected`, name);
    if (target.byteLength !== info.end - info.begin) {
      throw new SafetensorsError(this.path, `holds ${info.end - info.begin} codes, the target ${target.length}`, name);
    }
    return info;
  }

  private async readBytesAsync(info: TensorInfo, bytes: Uint8Array): Promise<void> {
    const { name } = info;
    let done = 0;
    while (done < bytes.length) {
      if (this.source.closed) throw new SafetensorsError(this.path, 'file already closed', name);
      const n = await this.source.readAsync(bytes, done, bytes.length - done, this.dataStart + info.begin + done);
      if (n === 0) throw new SafetensorsError(this.path, 'file ended while reading', name);
      done += n;
    }
  }

  /** `target` as bytes, when it holds exactly the F32 tensor `info`. */
  private bytesOfTarget(info: TensorInfo, target: Float32Array): Uint8Array {
    if (target.byteLength !== info.end - info.begin) {
      throw new SafetensorsError(this.path, `holds ${(info.end - info.begin) / 4} values, the target ${target.length}`, info.name);
    }
    return new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  }

  private readBytes(info: TensorInfo, into?: Uint8Array): Uint8Array {
    if (this.source.closed) throw new SafetensorsError(this.path, 'file already closed', info.name);
    // A fresh ArrayBuffer is 8-byte aligned, so typed views over it are always valid.
    const bytes = into ?? new Uint8Array(info.end - info.begin);
    let done = 0;
    while (done < bytes.length) {
      const n = this.source.read(bytes, done, bytes.length - done, this.dataStart + info.begin + done);
      if (n === 0) throw new SafetensorsError(this.path, 'file ended while reading', info.name);
      done += n;
    }
    return bytes;
  }

  /** Closes the file (or lets go of the bytes); safe to call twice. */
  close(): void {
    this.source.close();
  }
}

function parseHeader(path: string, source: ByteSource) {
  const fileSize = source.size;
  if (fileSize < 8) throw new SafetensorsError(path, `file is ${fileSize} bytes, too short for a header`);
  const lengthBytes = new Uint8Array(8);
  source.read(lengthBytes, 0, 8, 0);
  const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
  if (headerLength > fileSize - 8 || headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsError(
      path,
      `header length ${headerLength} does not fit in a file of ${fileSize} bytes (truncated or not safetensors)`,
    );
  }
  const headerBytes = new Uint8Array(headerLength);
  source.read(headerBytes, 0, headerLength, 8);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (cause) {
    throw new SafetensorsError(path, `header is not valid JSON: ${(cause as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError(path, 'header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(path, entry);
      continue;
    }
    tensors.set(name, parseEntry(path, name, entry, dataSize));
  }
  checkNoOverlap(path, [...tensors.values()]);
  return { dataStart, tensors, metadata };
}

function parseMetadata(path: string, entry: unknown): Record<string, string> {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new SafetensorsError(path, '__metadata__ is not an object');
  }
  for (const [key, value] of Object.entries(entry)) {
    if (typeof value !== 'string') throw new SafetensorsError(path, `__metadata__.${key} is not a string`);
  }
  return { ...(entry as Record<string, string>) };
}

function parseEntry(path: string, name: string, entry: unknown, dataSize: number): TensorInfo {
  const fail = (detail: string) => new SafetensorsError(path, detail, name);
  if (entry === null || typeof entry !== 'object') throw fail('header entry is not an object');
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
    throw fail(`unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw fail(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw fail(`data_offsets ${JSON.stringify(offsets)} is not an ordered [begin, end] pair`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    throw fail(`data ends at byte ${end}, past the end of the data section (${dataSize} bytes; file truncated?)`);
  }
  const expectedBytes = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_SIZES[dtype];
  if (end - begin !== expectedBytes) {
    throw fail(`shape [${shape}] of ${dtype} needs ${expectedBytes} bytes but data_offsets span ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

function checkNoOverlap(path: string, infos: TensorInfo[]): void {
  const sorted = infos.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new SafetensorsError(path, `data overlaps that of "${sorted[i - 1].name}"`, sorted[i].name);
    }
  }
}

export interface TensorSpec {
  readonly name: string;
  readonly dtype: StorageDtype;
  readonly shape: readonly number[];
}

export interface TensorToWrite extends TensorSpec {
  readonly data: Float32Array;
}
