/**
 * tsx scripts/bench/time-load.ts MODEL THREADS [DTYPE]
 *
 * One `loadEmbedder` on wasm in a process of its own, timed from the call to
 * an embedder ready (warm-up included): what a user's start costs. Prints
 * the milliseconds as JSON.
 */
import { loadEmbedder } from '../../src/embedder.js';
import type { Dtype } from '../../src/model/projection.js';

const [model, threads, dtype = 'fp32'] = process.argv.slice(2);
const start = performance.now();
const embedder = await loadEmbedder(model, { backend: 'wasm', workers: 1, threads: Number(threads), dtype: dtype as Dtype });
const ms = performance.now() - start;
await embedder.dispose();
console.log(JSON.stringify({ ms }));
