import * as tf from '@tensorflow/tfjs-core';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import type { SlotAllocator, WeightPacker } from '../model/nomic-bert.js';
import { packForXnnpack } from './wasm-heap.js';

/**
 * The tfjs-backend-wasm release whose matMul this packer was written for:
 * its BatchMatMul reads the right operand only when it creates the XNNPACK
 * operator it caches under that tensor (the first product), and disposing a
 * tensor frees the memory its `memoryOffset` names. Another release keeps
 * every weight's own memory.
 */
export const PACKED_ONLY_FOR_VERSION = '4.22.0';

/** Staging buffers: as many reads in flight as Node has I/O threads by default. */
const STAGING_BUFFERS = 4;

interface WasmModule {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAPU8: Uint8Array;
}

interface WasmBackendInternals {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32', memoryOffset?: number): tf.TensorInfo;
}

/**
 * The projections' packer on the threaded wasm backend. XNNPACK keeps its own
 * packed copy of each weight, and after that first product reads only that
 * copy: the weight's values are read into one of a few reused staging
 * buffers, packed from there, and the tensor keeps no memory of its own. That
 * holds the real model's projections once (450 MB) instead of twice, and the
 * reads fill pages already faulted in instead of fresh ones. The tensor must
 * then only ever be the right operand of `matMul(x, w)`, which is all the
 * model does with it; its values cannot be read back.
 *
 * Where the backend is another release, each weight gets its own memory in
 * the heap (`slots`) and is packed in place.
 */
export function xnnpackPacker(slots: SlotAllocator, wasmVersion: string = version_wasm): WeightPacker {
  return wasmVersion === PACKED_ONLY_FOR_VERSION ? new StagedPacker(tf.backend() as unknown as WasmBackendInternals) : new InPlacePacker(slots);
}

/** Packs each weight where it lies, keeping both copies. */
class InPlacePacker implements WeightPacker {
  constructor(private readonly slots: SlotAllocator) {}

  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<tf.Tensor> {
    const { tensor, target } = this.slots(shape);
    try {
      await fill(target);
      if (!packForXnnpack(tensor as tf.Tensor2D)) checkFinite(target);
      return tensor;
    } catch (error) {
      tensor.dispose();
      throw error;
    }
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

  constructor(private readonly backend: WasmBackendInternals) {}

  async pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<tf.Tensor> {
    const elements = shape.reduce((a, b) => a * b, 1);
    const buffer = await this.acquire(elements);
    try {
      // Shared memory never moves, so this view stays valid while other weights are made.
      const target = new Float32Array(this.backend.wasm.HEAPU8.buffer, buffer.pointer, elements);
      await fill(target);
      const tensor = tf.engine().makeTensorFromTensorInfo(this.backend.makeOutput([...shape], 'float32', buffer.pointer));
      // The tensor must not free the staging buffer when it is disposed; its memory is XNNPACK's packed copy from here on.
      this.backend.dataIdMap.get(tensor.dataId)!.memoryOffset = 0;
      try {
        if (!packForXnnpack(tensor as tf.Tensor2D)) checkFinite(target);
      } catch (error) {
        tensor.dispose();
        throw error;
      }
      return tensor;
    } finally {
      this.release(buffer);
    }
  }

  finish(): void {
    for (const buffer of this.made.splice(0)) this.backend.wasm._free(buffer.pointer);
    this.idle.length = 0;
  }

  /**
   * An idle buffer of at least `elements` floats, made when none fits. At
   * most STAGING_BUFFERS are in use at once; a few more may exist, the
   * projections coming in two sizes.
   */
  private async acquire(elements: number): Promise<StagingBuffer> {
    while (this.inUse >= STAGING_BUFFERS) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inUse++;
    const fitting = this.idle.findIndex((b) => b.elements >= elements);
    if (fitting >= 0) return this.idle.splice(fitting, 1)[0];
    const pointer = this.backend.wasm._malloc(elements * 4);
    if (pointer === 0) {
      this.inUse--;
      throw new Error(`the wasm heap could not lend ${elements * 4} bytes to stage a weight`);
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
