import { closeSync, openSync, read } from 'node:fs';

/** The parts of an Emscripten module this needs. */
export interface HeapOwner {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAPU8: Uint8Array;
}

/**
 * Heap memory whose pages the kernel has already handed over, made on one of
 * Node's I/O threads. The first write to a fresh page of the wasm heap is a
 * page fault, taken by whichever thread writes it: while loading, that is the
 * main thread packing projections for XNNPACK, its critical path. A freed
 * block is what the allocator hands out next for a request of about its size
 * (best fit), so a block made resident here and freed just before such a
 * request moves those faults onto an I/O thread, where they overlap the
 * packing of other weights.
 *
 * The pages are made resident by reading `/dev/zero` into them (the kernel
 * writes every page); where that device does not exist (Windows), nothing is
 * made resident and the faults stay where they were.
 */
export class ResidentMemory {
  private zeros: number | undefined;
  private unavailable = false;

  constructor(
    private readonly heap: HeapOwner,
    /** The device read from; its absence turns this off. */
    private readonly zeroDevicePath = '/dev/zero',
  ) {}

  /**
   * Allocates `bytes` and writes every page of it on an I/O thread. Resolves
   * to the block's address, which the caller frees, or to 0 where no block
   * could be made (no `/dev/zero`, a full heap, a failed read); never rejects.
   */
  async allocate(bytes: number): Promise<number> {
    const fd = this.zeroDevice();
    if (fd === undefined) return 0;
    const pointer = this.heap._malloc(bytes);
    if (pointer === 0) return 0;
    // Shared memory (the threaded build's) never moves, so the view stays valid while the read runs.
    const view = new Uint8Array(this.heap.HEAPU8.buffer, pointer, bytes);
    const written = await new Promise<boolean>((resolve) => read(fd, view, 0, bytes, null, (error, count) => resolve(error === null && count === bytes)));
    if (written) return pointer;
    this.heap._free(pointer);
    return 0;
  }

  /** Closes the device; later calls make nothing resident. */
  close(): void {
    if (this.zeros !== undefined) closeSync(this.zeros);
    this.zeros = undefined;
    this.unavailable = true;
  }

  private zeroDevice(): number | undefined {
    if (this.zeros === undefined && !this.unavailable) {
      try {
        this.zeros = openSync(this.zeroDevicePath, 'r');
      } catch {
        this.unavailable = true;
      }
    }
    return this.zeros;
  }
}

/**
 * Bytes enough for XNNPACK's packed copy of a float32 [K, N] weight: its GEMM
 * packing stores each column's K weights and one bias, for N rounded up to
 * the kernel's column tile (rounded up to 16 here, a margin over the tile),
 * plus `headroom` for the small allocations (the product's input row, its
 * output, the operator) that may be carved from the same free block first.
 */
export function packedCopyBytes([K, N]: readonly number[], headroom = 64 * 1024): number {
  return (K + 1) * Math.ceil(N / 16) * 16 * 4 + headroom;
}
