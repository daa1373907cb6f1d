/**
 * One benchmark measurement in its own process, so peak resident memory is its
 * own: prints a JSON line. Run by scripts/bench.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { selectBackend, type BackendName } from '../../src/backends/select.js';
import { loadEmbedder } from '../../src/embedder.js';
import { loadSet, type SetName } from './sets.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    backend: { type: 'string' },
    workers: { type: 'string' },
    set: { type: 'string' },
    fraction: { type: 'string' },
    roofline: { type: 'boolean' },
  },
});
const backend = values.backend as BackendName;

if (values.roofline) {
  await selectBackend(backend);
  // The model's own matMul shapes, at batch sizes it runs; the best rate is the roofline.
  const shapes: [number, number, number][] = [
    [512, 768, 3072],
    [1024, 768, 3072],
    [2048, 768, 3072],
    [2048, 3072, 768],
    [2048, 768, 768],
  ];
  let best = 0;
  const rates: Record<string, number> = {};
  for (const [m, k, n] of shapes) {
    const a = tf.randomNormal([m, k]);
    const b = tf.randomNormal([k, n]);
    tf.matMul(a, b).dispose();
    const reps = 3;
    const start = performance.now();
    for (let i = 0; i < reps; i++) {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    }
    const gflops = (2 * m * k * n * reps) / ((performance.now() - start) / 1000) / 1e9;
    rates[`${m}x${k}x${n}`] = gflops;
    best = Math.max(best, gflops);
    tf.dispose([a, b]);
  }
  console.log(JSON.stringify({ backend, matmulGflops: best, rates }));
} else {
  const texts = loadSet(values.set as SetName, Number(values.fraction ?? 1));
  const embedder = await loadEmbedder(values.model!, { backend, workers: Number(values.workers ?? 1) });
  // Warm-up: first calls compile kernels and grow the heap.
  await embedder.embed(texts.slice(0, Math.min(2, texts.length)).map((t) => t.split(' ').slice(0, 64).join(' ')));
  const { stats } = await embedder.embed(texts, { maxBatchTokens: 8192 });
  const workers = embedder.workers;
  await embedder.dispose();
  console.log(
    JSON.stringify({
      backend,
      workers,
      set: values.set,
      texts: stats.texts,
      tokens: stats.tokens,
      seconds: stats.wallTimeMs / 1000,
      tokensPerSecond: stats.tokensPerSecond,
      textsPerSecond: stats.textsPerSecond,
      batches: stats.batches,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      peakTensorBytes: stats.measuredPeakBytes,
    }),
  );
}
