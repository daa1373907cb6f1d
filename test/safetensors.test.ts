import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsError } from '../src/errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../src/weights/half-float.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { openSafetensors, writeSafetensors, writeSafetensorsStream } from '../src/weights/safetensors-file.js';
import { encodeSafetensors } from '../src/weights/safetensors-encode.js';
import { FIXTURE_NAMES, fixtureDir } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const dir = tempDir();
let counter = 0;

/** Writes raw bytes: an 8-byte length, the given header JSON, then `data`. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(), lengthOverride?: number): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(lengthOverride ?? json.length));
  const path = join(dir, `raw-${counter++}.safetensors`);
  writeFileSync(path, Buffer.concat([length, json, data]));
  return path;
}

/** The two ways in: a file on disk, and the same bytes in memory (as a browser downloads them), labelled by the path. */
const openers = {
  file: (path: string) => openSafetensors(path),
  bytes: (path: string) => SafetensorsFile.fromBytes(readFileSync(path), path),
};

/** Whether two float arrays hold the same bits; element-wise matchers take a minute on the fixtures' tensors. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function openError(path: string, open: (path: string) => SafetensorsFile = openers.file): SafetensorsError {
  try {
    open(path).close();
  } catch (error) {
    expect(error).toBeInstanceOf(SafetensorsError);
    expect((error as SafetensorsError).file).toBe(path);
    return error as SafetensorsError;
  }
  throw new Error(`${path} opened without error`);
}

describe('safetensors reader', () => {
  it('reads the fixture checkpoint with its metadata', () => {
    const file = openSafetensors(`${fixtureDir('nomic-tiny')}/model.safetensors`);
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.tensors.size).toBe(22);
    const ln = file.readFloat32('emb_ln.weight');
    expect(ln.length).toBe(64);
    expect(ln.every(Number.isFinite)).toBe(true);
    file.close();
    file.close();
  });

  it('round-trips F32, F16 and BF16 through the writer', () => {
    const data = new Float32Array([0, 1, -2.5, 65504, 1e-7, 3.140625, -0.0001, 1234.5]);
    const path = join(dir, 'roundtrip.safetensors');
    writeSafetensors(
      path,
      (['F32', 'F16', 'BF16'] as const).map((dtype) => ({ name: dtype, dtype, shape: [2, 4], data })),
      { purpose: 'test' },
    );
    const file = openSafetensors(path);
    expect(file.metadata).toEqual({ purpose: 'test' });
    expect(Array.from(file.readFloat32('F32'))).toEqual(Array.from(data));
    const f16 = file.readFloat32('F16');
    const bf16 = file.readFloat32('BF16');
    data.forEach((x, i) => {
      expect(Math.abs(f16[i] - x)).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -11, 2 ** -24));
      expect(Math.abs(bf16[i] - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8);
    });
    file.close();
  });

  it('decodes half-precision bit patterns exactly', () => {
    const bits = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x8000]);
    expect(Array.from(f16ToF32(bits))).toEqual([1, -2, 2 ** -24, 65504, Infinity, -Infinity, -0]);
    expect(Number.isNaN(f16ToF32(new Uint16Array([0x7e00]))[0])).toBe(true);
    expect(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0xc040])))).toEqual([1, -3]);
    // Ties round to even; values past the range become infinity.
    expect(Array.from(f32ToF16(new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000])))).toEqual([
      0x3c00, 0x3c02, 0x7c00,
    ]);
  });

  it('keeps NaN a NaN in bfloat16, whatever its payload, and rounds the rest to nearest even', () => {
    const nans = new Uint32Array([0x7f800001, 0xffffffff, 0x7fc00000, 0xff80ffff, 0x7fffffff]);
    const encoded = f32ToBf16(new Float32Array(nans.buffer));
    for (const [i, h] of encoded.entries()) {
      expect(Number.isNaN(bf16ToF32(new Uint16Array([h]))[0]), `NaN 0x${nans[i].toString(16)} became 0x${h.toString(16)}`).toBe(true);
    }
    // Sign kept.
    expect(encoded[1] & 0x8000).toBe(0x8000);
    const finite = new Uint32Array([0x3f808000, 0x3f818000, 0x7f7fffff, 0xff800000]);
    expect(Array.from(f32ToBf16(new Float32Array(finite.buffer)))).toEqual([0x3f80, 0x3f82, 0x7f80, 0xff80]);
  });

  it('reads bytes in memory exactly as it reads the file, through every read method', async () => {
    for (const model of FIXTURE_NAMES) {
      const path = `${fixtureDir(model)}/model.safetensors`;
      const fromFile = openSafetensors(path);
      const bytes = readFileSync(path);
      const fromBytes = SafetensorsFile.fromBytes(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), path);
      const fromBlob = await SafetensorsFile.fromBlob(new Blob([bytes]), path);
      expect(fromBytes.metadata).toEqual(fromFile.metadata);
      expect([...fromBytes.tensors.values()]).toEqual([...fromFile.tensors.values()]);
      for (const name of fromFile.tensors.keys()) {
        const expected = fromFile.readFloat32(name);
        expect(sameBits(fromBytes.readFloat32(name), expected)).toBe(true);
        expect(sameBits(fromBlob.readFloat32(name), expected)).toBe(true);
        const into = new Float32Array(expected.length);
        fromBytes.readFloat32Into(name, into);
        expect(sameBits(into, expected)).toBe(true);
        const intoAsync = new Float32Array(expected.length);
        await fromBytes.readFloat32IntoAsync(name, intoAsync);
        expect(sameBits(intoAsync, expected)).toBe(true);
      }
      for (const file of [fromFile, fromBytes, fromBlob]) file.close();
      expect(() => fromBytes.readFloat32('emb_ln.weight')).toThrow(/already closed/);
    }
  });

  it('reads int8 codes and half-precision tensors from bytes in memory', () => {
    const data = new Float32Array([0, 1, -2.5, 65504, 1e-7, 3.140625, -0.0001, 1234.5]);
    const codes = new Int8Array([-128, -1, 0, 1, 127, 5, -7, 64]);
    const path = join(dir, 'memory-kinds.safetensors');
    writeSafetensorsStream(
      path,
      [
        { name: 'h', dtype: 'F16', shape: [8] },
        { name: 'b', dtype: 'BF16', shape: [8] },
        { name: 'q', dtype: 'I8', shape: [2, 4] },
      ],
      [data, data, codes],
    );
    const fromFile = openSafetensors(path);
    // A view into a larger buffer, at an odd offset, as a slice of a bigger download would be.
    const raw = readFileSync(path);
    const padded = new Uint8Array(raw.length + 3);
    padded.set(raw, 3);
    const fromBytes = SafetensorsFile.fromBytes(padded.subarray(3), 'https://example.test/model.safetensors');
    expect(fromBytes.readFloat32('h')).toEqual(fromFile.readFloat32('h'));
    expect(fromBytes.readFloat32('b')).toEqual(fromFile.readFloat32('b'));
    const q = new Int8Array(8);
    fromBytes.readInt8Into('q', q);
    expect(Array.from(q)).toEqual(Array.from(codes));
    expect(() => fromBytes.readFloat32('q')).toThrow(SafetensorsError);
    fromFile.close();
    fromBytes.close();
  });

  it('encodes in memory what the file writer writes, its length known before any tensor is made', () => {
    const specs = [
      { name: 'f', dtype: 'F32', shape: [3] },
      { name: 'h', dtype: 'F16', shape: [2] },
      { name: 'q', dtype: 'I8', shape: [5] },
    ] as const;
    const data = [new Float32Array([1, -2, 3.5]), new Float32Array([0.5, 2]), new Int8Array([-3, 0, 1, 2, 127])];
    let made = 0;
    const encoded = encodeSafetensors('memory', specs, (function* () {
      for (const d of data) {
        made++;
        yield d;
      }
    })(), { source: 'x' });
    const length = encoded.byteLength;
    expect(made).toBe(0);
    const bytes = Buffer.concat([...encoded.chunks()]);
    expect(bytes.length).toBe(length);
    const path = join(dir, 'encoded.safetensors');
    writeSafetensorsStream(path, specs, data, { source: 'x' });
    expect(bytes.equals(readFileSync(path))).toBe(true);
    const file = SafetensorsFile.fromBytes(bytes, 'memory');
    expect(Array.from(file.readFloat32('f'))).toEqual([1, -2, 3.5]);
    expect(file.metadata).toEqual({ source: 'x' });
    file.close();
    // Data that does not match its header entry is refused as it is reached, naming the tensor.
    const wrong = encodeSafetensors('memory', specs, [data[0], new Float32Array(3)]);
    expect(() => [...wrong.chunks()]).toThrow(/data for tensor 1 does not match its header entry/);
  });

  it('names the label given to bytes in memory when they are malformed', () => {
    const url = 'https://example.test/broken/model.safetensors';
    const error = openError(url, () => SafetensorsFile.fromBytes(new Uint8Array([1, 2, 3]), url));
    expect(error.message).toContain(url);
  });
});

describe.each(Object.entries(openers))('safetensors reader on a bad file, read from a %s', (_, open) => {
  it('rejects a file shorter than the length field', () => {
    const path = join(dir, 'tiny.safetensors');
    writeFileSync(path, Buffer.from([1, 2, 3]));
    expect(openError(path, open).message).toMatch(/too short/);
  });

  it('rejects a truncated file', () => {
    const original = readFileSync(`${fixtureDir('nomic-tiny')}/model.safetensors`);
    const path = join(dir, 'truncated.safetensors');
    writeFileSync(path, original.subarray(0, original.length - 1000));
    const error = openError(path, open);
    expect(error.message).toMatch(/past the end of the data section/);
    expect(error.tensor).toBeDefined();
  });

  it('rejects a header length that points past the end of the file', () => {
    expect(openError(rawFile({}, new Uint8Array(), 10_000), open).message).toMatch(/header length 10000 does not fit/);
  });

  it('rejects a header that is not JSON', () => {
    expect(openError(rawFile('{"a": [1, 2'), open).message).toMatch(/not valid JSON/);
  });

  it('rejects an unknown dtype, naming the tensor', () => {
    const error = openError(rawFile({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)));
    expect(error.tensor).toBe('w');
    expect(error.message).toMatch(/unknown dtype "F128"/);
  });

  it('rejects offsets that disagree with shape and dtype', () => {
    const error = openError(rawFile({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(20)));
    expect(error.message).toMatch(/needs 24 bytes but data_offsets span 20/);
  });

  it('rejects overlapping tensors', () => {
    const header = {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
    };
    expect(openError(rawFile(header, new Uint8Array(24)), open).message).toMatch(/overlaps that of "a"/);
  });

  it('rejects a malformed shape or offset pair', () => {
    expect(openError(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), open).message).toMatch(
      /shape/,
    );
    expect(openError(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)), open).message).toMatch(
      /data_offsets/,
    );
  });

  it('refuses to read integer tensors as weights', () => {
    const file = open(rawFile({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)));
    expect(() => file.readFloat32('ids')).toThrow(/I64 is not a float type/);
    file.close();
  });
});
