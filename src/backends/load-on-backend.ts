import { loadModel, loadModelConcurrently, type LoadModelOptions } from '../model/load-model.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import type { BackendName } from './select.js';
import { allocateInWasmHeap, wasmHeapSlots } from './wasm-heap.js';
import { xnnpackPacker } from './xnnpack-packer.js';

/**
 * Loads a model folder onto the active backend the fastest way it allows.
 * Threaded wasm: the weights read straight into the shared heap on Node's I/O
 * threads while this thread packs the projections already read for XNNPACK
 * (the packing would otherwise fall into the first call, or the warm-up),
 * keeping only the packed copy (see `xnnpackPacker`). Other wasm: the same,
 * one tensor after another. Elsewhere: through JavaScript arrays, which tfjs
 * uploads.
 */
export async function loadModelOnBackend(name: BackendName, dir: string, options: LoadModelOptions): Promise<NomicBertModel> {
  if (name !== 'wasm') return loadModel(dir, options);
  const slots = wasmHeapSlots();
  if (slots !== undefined) return loadModelConcurrently(dir, options, slots, xnnpackPacker());
  return loadModel(dir, options, allocateInWasmHeap, xnnpackPacker());
}
