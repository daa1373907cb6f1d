/**
 * One benchmark measurement in its own process, so peak resident memory is its
 * own: prints a JSON line. Run by scripts/bench.ts.
 */
import { parseArgs } from 'node:util';
import { selectBackend, type BackendName } from '../../src/backends/select.js';
import { loadEmbedder } from '../../src/embedder.js';
import { webGpuAdapter } from '../../src/backends/webgpu/device.js';
import { measureMatMul, rooflineShapes } from './roofline.js';
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
  const { best, rates } = await measureMatMul(rooflineShapes(backend, webGpuAdapter()?.software));
  console.log(JSON.stringify({ backend, matmulGflops: best, rates, adapter: webGpuAdapter() }));
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
