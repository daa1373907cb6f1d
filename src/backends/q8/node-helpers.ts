import { Worker } from 'node:worker_threads';
import type { WasmMemory, WasmModule } from './kernel-module.js';
import { HELPER_LOOP, helperControl, type ProductHelpers } from './q8-threads.js';

/** An eval'd worker, so that it loads from `src/` and `dist/` alike. */
const NODE_HELPER = `
const { module, relaxed, memory, control } = require('node:worker_threads').workerData;
${HELPER_LOOP}`;

/** `count` worker threads running the product kernels of `module` (and of `relaxed`, where it is used) on the shared `memory`. */
export function spawnNodeHelpers(module: WasmModule, relaxed: WasmModule | undefined, memory: WasmMemory, count: number): ProductHelpers {
  const control = helperControl(count);
  const threads = Array.from({ length: count }, () => {
    const worker = new Worker(NODE_HELPER, { eval: true, workerData: { module, relaxed, memory, control: control.buffer } });
    // Idle helpers wait on the control block; they must not keep the process alive.
    worker.unref();
    return worker;
  });
  return { control, threads };
}
