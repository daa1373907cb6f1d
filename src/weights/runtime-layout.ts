import { SafetensorsError } from '../errors.js';
import type { NomicBertConfig } from './config.js';
import { CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, Q8_CHECKPOINT_DTYPE, runtimeTensors, type CheckedCheckpoint } from './load.js';
import { quantizeWeight } from './q8-codes.js';
import type { FloatDtype, TensorSpec } from './safetensors.js';
import { encodeSafetensors, type EncodedSafetensors } from './safetensors-encode.js';
import { projectionNames, q8Table, weightTable } from './weight-table.js';

/** Every tensor as one float type, or the projections as q8 codes and scales and the rest as float32. */
export type RuntimeStorage = FloatDtype | typeof Q8_CHECKPOINT_DTYPE;

const LARGEST_F16 = 65504;

/**
 * A checkpoint's tensors in the runtime layout (matrices transposed, q/k/v
 * split), as safetensors bytes made one tensor at a time, with the format
 * version, dtype and `metadata` in `__metadata__`: what the converter writes
 * to a file and a page keeps in its cache. `tensors` counts the runtime
 * tensors; `onProgress` is told after each one is made.
 */
export function encodeRuntimeLayout(
  checkpoint: CheckedCheckpoint,
  config: NomicBertConfig,
  storage: RuntimeStorage,
  metadata: Readonly<Record<string, string>>,
  onProgress?: (done: number, total: number) => void,
): EncodedSafetensors & { readonly tensors: number } {
  const table = weightTable(config, 'runtime', checkpoint.ffnWidth);
  const projections = storage === Q8_CHECKPOINT_DTYPE ? projectionNames(config.n_layer) : new Set<string>();
  const specs: TensorSpec[] = [...q8Table(table, projections)].map(([name, shape]) => ({
    name,
    shape,
    dtype: storage !== Q8_CHECKPOINT_DTYPE ? storage : projections.has(name) ? 'I8' : 'F32',
  }));
  function* checked() {
    let done = 0;
    for (const tensor of runtimeTensors(checkpoint, config)) {
      if (projections.has(tensor.name)) {
        const [K, N] = tensor.shape;
        const { codes, scales } = quantizeWeight(tensor.data, K, N);
        yield codes;
        onProgress?.(++done, table.size);
        yield scales;
        continue;
      }
      if (storage === 'F16') {
        const overflow = tensor.data.findIndex((x) => Math.abs(x) > LARGEST_F16);
        if (overflow >= 0) {
          throw new SafetensorsError(
            checkpoint.file.path,
            `value ${tensor.data[overflow]} at flat index ${overflow} does not fit in float16; convert to float32`,
            tensor.source ?? tensor.name,
          );
        }
      }
      yield tensor.data;
      onProgress?.(++done, table.size);
    }
  }
  const encoded = encodeSafetensors(checkpoint.file.path, specs, { [Symbol.iterator]: checked }, {
    ...metadata,
    format: CONVERTED_FORMAT,
    format_version: CONVERTED_FORMAT_VERSION,
    dtype: storage,
  });
  return { ...encoded, tensors: table.size };
}
