/**
 * tsx scripts/bench/time-load.ts MODEL THREADS
 *
 * One `loadEmbedder` on wasm in a process of its own, timed from the call to
 * an embedder ready (warm-up included): what a user's start costs. Prints
 * the milliseconds as JSON.
 */
import { loadEmbedder } from '../../src/embedder.js';

const [model, threads] = process.argv.slice(2);
const start = performance.now();
const embedder = await loadEmbedder(model, { backend: 'wasm', workers: 1, threads: Number(threads) });
const ms = performance.now() - start;
await embedder.dispose();
console.log(JSON.stringify({ ms }));
