import * as tf from '@tensorflow/tfjs-core';
import type { NomicBertConfig } from '../weights/config.js';
import type { NamedTensor } from '../weights/layout.js';
import type { Q8TensorSource, TensorSource } from '../weights/load.js';
import { projectionNames } from '../weights/weight-table.js';
import { NomicBertModel } from './nomic-bert.js';
import { disposeWeight, type ModelWeight } from './projection.js';

/*
 * Making a model's weights on a backend: how each tensor's memory is had
 * (a JavaScript array, or the wasm heap itself), how the projections are
 * packed for the backend's products, and reading the file straight into
 * them. The model itself (`nomic-bert.ts`) only takes the finished tensors.
 */

/** Makes a float32 tensor of `shape` on the active backend, whose values `fill` writes into the memory it is given. */
export type TensorAllocator = (shape: readonly number[], fill: (target: Float32Array) => void) => tf.Tensor;

/** Fills a JavaScript array, which tfjs then copies to the backend: works on every backend. */
export const allocateInJs: TensorAllocator = (shape, fill) => {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(data);
  return tf.tensor(data, [...shape], 'float32');
};

/**
 * A float32 tensor of `shape` whose memory `target` is, made before its
 * values are there: `target` must stay valid while other tensors are made
 * (the threaded wasm backend's heap, shared memory, never moves).
 */
export interface WeightSlot {
  readonly tensor: tf.Tensor;
  readonly target: Float32Array;
  /**
   * A backend's quick check of the values once written: true when every one
   * is finite; false when one may not be, and the loader then looks for it.
   * Absent where the backend has none quicker than the loader's own pass.
   */
  readonly allFinite?: () => boolean;
}
export type SlotAllocator = (shape: readonly number[]) => WeightSlot;

/**
 * Makes the projection weights (the matrices every product multiplies by) on
 * a backend that prepares them for its matMuls, and may keep only the
 * prepared form. Each weight's values are written by `fill` into memory the
 * packer lends; `checkFinite` throws for a NaN or infinity in them, and is
 * called unless the preparation has vouched for every value itself.
 */
export interface WeightPacker {
  pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<ModelWeight>;
  /** The same, one weight at a time, with a `fill` that checks the values itself. */
  packSync(shape: readonly number[], fill: (target: Float32Array) => void): ModelWeight;
  /** Where the packer's form is q8 codes: takes a q8 checkpoint's codes and scales as they are, with no quantization pass. */
  packQ8?(shape: readonly number[], source: Q8TensorSource): ModelWeight;
  /** Frees what the packer lent, once no fill is writing any more; the weights it made stay. */
  finish(): void;
}

/**
 * Uploads runtime-layout tensors (as the loader yields them) to the active
 * backend. If the source fails midway, what was uploaded is freed.
 */
export function modelFromTensors(config: NomicBertConfig, tensors: Iterable<NamedTensor>): NomicBertModel {
  const sources = [...tensors].map(({ name, shape, data }) => ({ name, shape, readInto: (target: Float32Array) => target.set(data) }));
  return modelFromSources(config, sources);
}

/**
 * Makes each weight with `allocate`, which hands the tensor's memory to its
 * source to fill (for the wasm backend, a view of its heap: the file is read
 * straight into it), or, for the projections, with `packer`. If a source
 * fails midway, what was made is freed.
 */
export function modelFromSources(
  config: NomicBertConfig,
  sources: Iterable<Pick<TensorSource, 'name' | 'shape' | 'readInto' | 'q8'>>,
  allocate: TensorAllocator = allocateInJs,
  packer?: WeightPacker,
): NomicBertModel {
  const projections = projectionNames(config.n_layer);
  const weights = new Map<string, ModelWeight>();
  try {
    for (const { name, shape, readInto, q8 } of sources) {
      if (q8 !== undefined && packer?.packQ8 !== undefined) weights.set(name, packer.packQ8(shape, q8));
      else weights.set(name, packer !== undefined && projections.has(name) ? packer.packSync(shape, readInto) : allocate(shape, readInto));
    }
  } catch (error) {
    for (const weight of weights.values()) disposeWeight(weight);
    throw error;
  } finally {
    packer?.finish();
  }
  return new NomicBertModel(config, weights);
}

/**
 * As {@link modelFromSources}, with the reads in flight at once on Node's I/O
 * threads: this thread meanwhile checks the weights already read, and the
 * projection matrices go through `packer` (XNNPACK packs a weight on its
 * first product, 0.95 s of the real model's start on two cores, which so
 * overlaps the reading). If any read or check fails, every tensor is freed
 * once no read is writing into one any more, and the first failure is thrown.
 */
export async function modelFromSourcesConcurrently(
  config: NomicBertConfig,
  sources: Iterable<Pick<TensorSource, 'name' | 'shape' | 'readIntoAsync' | 'checkFinite' | 'q8'>>,
  allocate: SlotAllocator,
  packer?: WeightPacker,
): Promise<NomicBertModel> {
  const projections = projectionNames(config.n_layer);
  const weights = new Map<string, ModelWeight>();
  const reads: Promise<void>[] = [];
  let failures: unknown[] = [];
  try {
    for (const { name, shape, readIntoAsync, checkFinite, q8 } of sources) {
      // Codes read as they are: a copy from the file, no quicker on an I/O thread than the promise it would take.
      if (q8 !== undefined && packer?.packQ8 !== undefined) {
        weights.set(name, packer.packQ8(shape, q8));
        continue;
      }
      if (packer !== undefined && projections.has(name)) {
        reads.push(packer.pack(shape, (target) => readIntoAsync(target, false), checkFinite).then((tensor) => void weights.set(name, tensor)));
        continue;
      }
      const { tensor, target, allFinite } = allocate(shape);
      weights.set(name, tensor);
      // The read checks the values itself unless the backend has a quicker check.
      reads.push(
        readIntoAsync(target, allFinite === undefined).then(() => {
          if (allFinite !== undefined && !allFinite()) checkFinite(target);
        }),
      );
    }
  } catch (error) {
    failures = [error];
  }
  // Nothing may be freed while a read still writes into it.
  for (const result of await Promise.allSettled(reads)) if (result.status === 'rejected') failures.push(result.reason);
  packer?.finish();
  if (failures.length > 0) {
    for (const weight of weights.values()) disposeWeight(weight);
    throw failures[0];
  }
  return new NomicBertModel(config, weights);
}

