import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { packedCopyBytes, ResidentMemory, type HeapOwner } from '../src/backends/resident-memory.js';

const MiB = 1024 * 1024;

/** A heap over fresh shared memory (pages not yet resident) with a bump allocator, as the threaded wasm build's heap is shared. */
function freshHeap(bytes: number): HeapOwner & { freed: number[] } {
  const memory = new SharedArrayBuffer(bytes);
  let top = 4096;
  const freed: number[] = [];
  return {
    HEAPU8: new Uint8Array(memory),
    _malloc: (size) => (top + size > bytes ? 0 : ((top += size), top - size)),
    _free: (pointer) => void freed.push(pointer),
    freed,
  };
}

/** Resident pages of this process, from /proc (Linux). */
const residentBytes = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
const linux = process.platform === 'linux';

describe('ResidentMemory', () => {
  it.runIf(linux)('hands back a block whose pages are already resident, written on an I/O thread', async () => {
    const heap = freshHeap(96 * MiB);
    const memory = new ResidentMemory(heap);
    const before = residentBytes();
    const pointer = await memory.allocate(64 * MiB);
    const grown = residentBytes() - before;
    memory.close();
    expect(pointer).toBeGreaterThan(0);
    // A plain allocation leaves its pages untouched; this one makes all 64 MiB resident.
    expect(grown).toBeGreaterThan(60 * MiB);
    expect(heap.freed).toEqual([]);
  });

  it('zeroes every byte of the block it hands back', async () => {
    const heap = freshHeap(4 * MiB);
    heap.HEAPU8.fill(0xab);
    const memory = new ResidentMemory(heap);
    const pointer = await memory.allocate(MiB + 3);
    memory.close();
    expect(heap.HEAPU8.subarray(pointer, pointer + MiB + 3).every((b) => b === 0)).toBe(true);
    expect(heap.HEAPU8[pointer + MiB + 3]).toBe(0xab);
  });

  it('makes nothing, and allocates nothing, where the zero device is missing', async () => {
    const heap = freshHeap(4 * MiB);
    const malloc = vi.spyOn(heap, '_malloc');
    const memory = new ResidentMemory(heap, '/nonexistent/zero');
    await expect(memory.allocate(MiB)).resolves.toBe(0);
    expect(malloc).not.toHaveBeenCalled();
  });

  it('resolves to 0 when the heap cannot lend the block, and after close', async () => {
    const heap = freshHeap(2 * MiB);
    const memory = new ResidentMemory(heap);
    await expect(memory.allocate(4 * MiB)).resolves.toBe(0);
    memory.close();
    await expect(memory.allocate(MiB)).resolves.toBe(0);
  });

  it('sizes a packed copy as XNNPACK does: a bias and K weights per column, columns rounded up to 16, with headroom', () => {
    expect(packedCopyBytes([768, 3072], 0)).toBe(769 * 3072 * 4);
    expect(packedCopyBytes([64, 20], 0)).toBe(65 * 32 * 4);
    expect(packedCopyBytes([64, 64])).toBe(65 * 64 * 4 + 64 * 1024);
  });
});
