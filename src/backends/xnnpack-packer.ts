import * as tf from '@tensorflow/tfjs-core';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { BackendError } from '../errors.js';
import type { WeightPacker } from '../model/build-model.js';
import { packedCopyBytes, ResidentMemory } from './resident-memory.js';
import { WASM_INTERNALS_VERSION, type WasmBackendInternals } from './wasm-internals.js';
import { allocateInWasmHeap, packForXnnpack, wasmHeapSlots } from './wasm-heap.js';

/**
 * The tfjs-backend-wasm release whose matMul this packer was written for:
 * its BatchMatMul reads the right operand only when it creates the XNNPACK
 * operator it caches under that tensor (the first product), and disposing a
 * tensor frees the memory its `memoryOffset` names. Another release keeps
 * every weight's own memory.
 */
export const PACKED_ONLY_FOR_VERSION = WASM_INTERNALS_VERSION;

/** Copies of the projections a wasm model holds: XNNPACK's packed one, and on another release tfjs's as well. */
export function wasmWeightCopies(wasmVersion: string = version_wasm): number {
  return wasmVersion === PACKED_ONLY_FOR_VERSION ? 1 : 2;
}

/** Staging buffers: as many reads in flight as Node has I/O threads by default. */
const STAGING_BUFFERS = 4;

/**
 * The projections' packer on the wasm backend. XNNPACK keeps its own packed
 * copy of each weight, and after that first product reads only that copy:
 * the weight's values are read into one of a few reused staging buffers,
 * packed from there, and the tensor keeps no memory of its own. That holds
 * the real model's projections once (450 MB) instead of twice, and the reads
 * fill pages already faulted in instead of fresh ones. The tensor must then
 * only ever be the right operand of `matMul(x, w)`, which is all the model
 * does with it; its values cannot be read back.
 *
 * Where the backend is another release, each weight gets its own memory in
 * the heap and is packed in place.
 */
export function xnnpackPacker(wasmVersion: string = version_wasm): WeightPacker {
  return wasmVersion === PACKED_ONLY_FOR_VERSION ? new StagedPacker(tf.backend() as unknown as WasmBackendInternals) : new InPlacePacker();
}

/** Packs `weight`, calling `onNonFinite` when the packing product finds a NaN or infinity; disposes it if either throws. */
function packOrDispose(weight: tf.Tensor, onNonFinite: () => void): tf.Tensor {
  try {
    if (!packForXnnpack(weight as tf.Tensor2D)) onNonFinite();
    return weight;
  } catch (error) {
    weight.dispose();
    throw error;
  }
}

/** Packs each weight where it lies, keeping both copies. */
class InPlacePacker implements WeightPacker {
  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<tf.Tensor> {
    const slots = wasmHeapSlots();
    if (slots === undefined) throw new BackendError('wasm', 'weights can be read concurrently only into a shared heap (the threaded build)');
    const { tensor, target } = slots(shape);
    try {
      await fill(target);
    } catch (error) {
      tensor.dispose();
      throw error;
    }
    return packOrDispose(tensor, () => checkFinite(target));
  }

  packSync(shape: readonly number[], fill: (target: Float32Array) => void): tf.Tensor {
    // `fill` has checked the values.
    return packOrDispose(allocateInWasmHeap(shape, fill), () => {});
  }

  finish(): void {}
}

interface StagingBuffer {
  readonly pointer: number;
  readonly elements: number;
}

/** Packs each weight from a staging buffer; the weight's tensor owns no memory. */
class StagedPacker implements WeightPacker {
  /** Every staging buffer made, free ones in `idle`; none is freed before `finish`. */
  private readonly made: StagingBuffer[] = [];
  private readonly idle: StagingBuffer[] = [];
  private inUse = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly landings: ResidentMemory;

  constructor(private readonly backend: WasmBackendInternals) {
    this.landings = new ResidentMemory(backend.wasm);
  }

  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<tf.Tensor> {
    while (this.inUse >= STAGING_BUFFERS) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const buffer = this.acquire(shape);
    try {
      // Shared memory never moves, so this view stays valid while other weights are made.
      const target = this.viewOf(buffer, shape);
      // While the weight is read, another I/O thread faults in the pages its packed copy will take.
      const [read, landing] = await Promise.allSettled([fill(target), this.landings.allocate(packedCopyBytes(shape))]);
      const pointer = landing.status === 'fulfilled' ? landing.value : 0;
      // Freed just before the product that packs: the packed copy, the next allocation of about its size, lands there.
      if (pointer !== 0) this.backend.wasm._free(pointer);
      if (read.status === 'rejected') throw read.reason;
      return this.packFrom(buffer, shape, () => checkFinite(target));
    } finally {
      this.release(buffer);
    }
  }

  packSync(shape: readonly number[], fill: (target: Float32Array) => void): tf.Tensor {
    const buffer = this.acquire(shape);
    try {
      fill(this.viewOf(buffer, shape));
      // `fill` has checked the values.
      return this.packFrom(buffer, shape, () => {});
    } finally {
      this.release(buffer);
    }
  }

  /** The weight made over `buffer` and packed; `checkFinite` runs when the packing product finds a NaN or infinity. */
  private packFrom(buffer: StagingBuffer, shape: readonly number[], checkFinite: () => void): tf.Tensor {
    const tensor = tf.engine().makeTensorFromTensorInfo(this.backend.makeOutput([...shape], 'float32', buffer.pointer));
    // The tensor must not free the staging buffer when it is disposed; its memory is XNNPACK's packed copy from here on.
    this.backend.dataIdMap.get(tensor.dataId)!.memoryOffset = 0;
    return packOrDispose(tensor, checkFinite);
  }

  /** A view of the heap's current memory (a heap that is not shared is replaced when it grows). */
  private viewOf(buffer: StagingBuffer, shape: readonly number[]): Float32Array {
    return new Float32Array(this.backend.wasm.HEAPU8.buffer, buffer.pointer, shape.reduce((a, b) => a * b, 1));
  }

  finish(): void {
    for (const buffer of this.made.splice(0)) this.backend.wasm._free(buffer.pointer);
    this.idle.length = 0;
    this.landings.close();
  }

  /**
   * An idle buffer that holds `shape`, made when none does. Callers keep at
   * most STAGING_BUFFERS in use at once; a few more may exist, the
   * projections coming in two sizes.
   */
  private acquire(shape: readonly number[]): StagingBuffer {
    const elements = shape.reduce((a, b) => a * b, 1);
    this.inUse++;
    const fitting = this.idle.findIndex((b) => b.elements >= elements);
    if (fitting >= 0) return this.idle.splice(fitting, 1)[0];
    const pointer = this.backend.wasm._malloc(elements * 4);
    if (pointer === 0) {
      this.inUse--;
      this.waiting.shift()?.();
      throw new BackendError('wasm', `its heap could not lend ${elements * 4} bytes to stage a weight while loading`);
    }
    const buffer = { pointer, elements };
    this.made.push(buffer);
    return buffer;
  }

  private release(buffer: StagingBuffer): void {
    this.idle.push(buffer);
    this.inUse--;
    this.waiting.shift()?.();
  }
}
