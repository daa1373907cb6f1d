import { SafetensorsError } from '../errors.js';
import { f32ToBf16, f32ToF16 } from './half-float.js';
import { DTYPE_SIZES, type StorageDtype, type TensorSpec } from './safetensors.js';

/**
 * Safetensors bytes as a sequence of chunks: the header, then each tensor's
 * data as it is made, so a writer (a file in Node, a cached response in a
 * page) never holds more than one tensor. Runs anywhere.
 */
export interface EncodedSafetensors {
  /** Bytes of the whole file, known before any tensor is made. */
  readonly byteLength: number;
  /** The header, then one chunk per tensor; throws {@link SafetensorsError} for data that does not match its header entry. */
  chunks(): Generator<Uint8Array>;
}

/**
 * Encodes tensors of `specs` whose float32 data (or int8 codes, for I8)
 * `data` yields in the same order. `label` names the file in errors.
 */
export function encodeSafetensors(
  label: string,
  specs: readonly TensorSpec[],
  data: Iterable<Float32Array | Int8Array>,
  metadata: Readonly<Record<string, string>> = {},
): EncodedSafetensors {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of specs) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Padded with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const headerLength = json.length + ((8 - ((8 + json.length) % 8)) % 8);
  const head = new Uint8Array(8 + headerLength).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerLength), true);
  head.set(json, 8);
  return {
    byteLength: head.length + offset,
    *chunks() {
      yield head;
      let index = 0;
      for (const values of data) {
        const spec = specs[index++];
        const expected = spec?.shape.reduce((a, b) => a * b, 1);
        if (spec === undefined || values.length !== expected) {
          throw new SafetensorsError(label, `data for tensor ${index - 1} does not match its header entry`, spec?.name);
        }
        // Codes are stored as they are and floats converted: neither is ever taken for the other.
        if ((spec.dtype === 'I8') !== values instanceof Int8Array) {
          throw new SafetensorsError(label, `data for ${spec.dtype} must be ${spec.dtype === 'I8' ? 'an Int8Array' : 'a Float32Array'}`, spec.name);
        }
        const encoded = encode(spec.dtype, values);
        yield new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
      }
      if (index !== specs.length) throw new SafetensorsError(label, `got data for ${index} of ${specs.length} tensors`);
    },
  };
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
