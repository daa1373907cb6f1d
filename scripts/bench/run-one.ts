/**
 * One benchmark measurement in its own process, so peak resident memory is its
 * own: prints a JSON line. Run by scripts/bench.ts.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { selectBackend, type BackendName } from '../../src/backends/select.js';
import { loadEmbedder, type Embedder } from '../../src/embedder.js';
import { runtimeLayoutFile } from '../../src/weights/layout-cache.js';
import { readConfig, weightsPath } from '../../src/weights/model-folder.js';
import { webGpuAdapter } from '../../src/backends/webgpu/device.js';
import { measureMatMul, rooflineShapes } from './roofline.js';
import { loadSet, type SetName } from './sets.js';
import type { Dtype } from '../../src/model/projection.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    backend: { type: 'string' },
    workers: { type: 'string' },
    threads: { type: 'string' },
    startup: { type: 'boolean' },
    set: { type: 'string' },
    fraction: { type: 'string' },
    roofline: { type: 'boolean' },
    concurrent: { type: 'string' },
    dtype: { type: 'string' },
    fidelity: { type: 'boolean' },
    'max-batch-tokens': { type: 'string' },
  },
});
const backend = values.backend as BackendName;

if (values.roofline) {
  await selectBackend(backend);
  const { best, rates } = await measureMatMul(rooflineShapes(backend, webGpuAdapter()?.software));
  console.log(JSON.stringify({ backend, matmulGflops: best, rates, adapter: webGpuAdapter() }));
} else if (values.startup) {
  // Start-up: reading the weights file the loader will read (the cache is made first, when due), then loading,
  // the first call, and the steady single-text latency.
  const model = values.model!;
  const file = runtimeLayoutFile(weightsPath(model), readConfig(model));
  let started = performance.now();
  const bytes = readFileSync(file).length;
  const readMs = performance.now() - started;
  started = performance.now();
  const embedder = await loadEmbedder(model, options());
  const loadMs = performance.now() - started;
  const query = (i: number) => `search query number ${i}: how do rotary position embeddings extend to long inputs`;
  started = performance.now();
  await embedder.embed([query(0)]);
  const firstCallMs = performance.now() - started;
  started = performance.now();
  await embedder.embed([query(1)]);
  const secondCallMs = performance.now() - started;
  const later: number[] = [];
  for (let i = 2; i <= 11; i++) {
    started = performance.now();
    await embedder.embed([query(i)]);
    later.push(performance.now() - started);
  }
  const rssAfterWarmUp = process.memoryUsage().rss;
  await report(embedder, {
    kind: 'startup',
    fileBytes: bytes,
    readMs,
    loadMs,
    firstCallMs,
    secondCallMs,
    singleTextMs: later.sort((a, b) => a - b)[later.length >> 1],
    rssAfterWarmUpBytes: rssAfterWarmUp,
  });
} else if (values.fidelity) {
  // q8 against float32 on the same texts and backend: per-text cosine of the normalised embeddings, and how
  // many of each text's 10 nearest neighbours among the others (by cosine) both find.
  const texts = loadSet(values.set as SetName, Number(values.fraction ?? 1));
  const [fp32, q8] = [await loadEmbedder(values.model!, { ...options(), dtype: 'fp32' }), await loadEmbedder(values.model!, { ...options(), dtype: 'q8' })];
  const exact = (await fp32.embed(texts, { maxBatchTokens: 8192 })).embeddings;
  const quantized = (await q8.embed(texts, { maxBatchTokens: 8192 })).embeddings;
  await fp32.dispose();
  const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, i) => sum + x * b[i], 0);
  const cosines = exact.map((v, i) => dot(v, quantized[i]));
  // Ten neighbours, or all the others where there are fewer.
  const k = Math.min(10, texts.length - 1);
  const nearest = (vectors: Float32Array[], i: number) =>
    vectors
      .map((v, j) => ({ j, score: dot(vectors[i], v) }))
      .filter((n) => n.j !== i)
      .sort((a, b) => b.score - a.score)
      .slice(0, k)
      .map((n) => n.j);
  const overlaps = exact.map((_, i) => {
    const mine = new Set(nearest(exact, i));
    return nearest(quantized, i).filter((j) => mine.has(j)).length / k;
  });
  await report(q8, {
    kind: 'fidelity',
    set: values.set,
    texts: texts.length,
    meanCosine: cosines.reduce((a, b) => a + b, 0) / cosines.length,
    worstCosine: Math.min(...cosines),
    meanTop10Overlap: overlaps.reduce((a, b) => a + b, 0) / overlaps.length,
  });
} else if (values.concurrent !== undefined) {
  // N single-text calls awaited one after another, against the same N calls made at once (which the embedder's
  // queue gathers into shared batches): alternating passes, medians. The concurrent calls' vectors must equal
  // bit for bit those of one call with all N texts (the same batch); against the texts embedded alone they
  // differ by padding's rounding only, reported as the largest difference.
  const calls = Number(values.concurrent);
  const embedder = await loadEmbedder(values.model!, options());
  // Queries, as a service's single-text calls mostly are: 11 to 19 tokens.
  const texts = Array.from({ length: calls }, (_, i) => `query ${i}: ${'how do rotary position embeddings extend to long inputs'.split(' ').slice(0, 3 + (i % 6)).join(' ')}`);
  const sequential: number[] = [];
  const together: number[] = [];
  let identical = true;
  // The whole list as one call: the batch the concurrent calls must reproduce bit for bit.
  const batched = (await embedder.embed(texts)).embeddings;
  let maxDifference = 0;
  // Five rounds warm V8 and the kernels up; twenty-five are timed (a round is tens of milliseconds, and on a shared machine
  // one round in four or five is disturbed: seven gave medians that moved by a quarter from run to run).
  for (let round = 0; round < 30; round++) {
    let started = performance.now();
    const one: Float32Array[] = [];
    for (const text of texts) one.push((await embedder.embed([text])).embeddings[0]);
    const sequentialMs = performance.now() - started;
    started = performance.now();
    const all = (await Promise.all(texts.map((text) => embedder.embed([text])))).map((r) => r.embeddings[0]);
    const concurrentMs = performance.now() - started;
    if (round >= 5) {
      sequential.push(sequentialMs);
      together.push(concurrentMs);
    }
    identical &&= all.every((v, i) => v.every((x, d) => Object.is(x, batched[i][d])));
    for (const [i, v] of all.entries()) v.forEach((x, d) => (maxDifference = Math.max(maxDifference, Math.abs(x - one[i][d]))));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  await report(embedder, {
    kind: 'concurrent',
    calls,
    sequentialMs: median(sequential),
    concurrentMs: median(together),
    speedUps: sequential.map((s, i) => s / together[i]),
    identical,
    maxDifference,
  });
} else {
  const texts = loadSet(values.set as SetName, Number(values.fraction ?? 1));
  const embedder = await loadEmbedder(values.model!, options());
  // The backend's default batch budget unless told: the RSS after the call is what a user's process keeps.
  const maxBatchTokens = values['max-batch-tokens'] === undefined ? undefined : Number(values['max-batch-tokens']);
  const { stats } = await embedder.embed(texts, maxBatchTokens === undefined ? {} : { maxBatchTokens });
  // What the process holds once the call is over: the wasm heap keeps the largest batch's activations.
  const rssAfterCallBytes = process.memoryUsage().rss;
  await report(embedder, {
    rssAfterCallBytes,
    set: values.set,
    texts: stats.texts,
    tokens: stats.tokens,
    seconds: stats.wallTimeMs / 1000,
    tokensPerSecond: stats.tokensPerSecond,
    textsPerSecond: stats.textsPerSecond,
    batches: stats.batches,
    peakTensorBytes: stats.measuredPeakBytes,
  });
}

/** Disposes the embedder and prints one line of JSON: the configuration, `figures` and the peak RSS. */
async function report(embedder: Embedder, figures: Record<string, unknown>): Promise<void> {
  const { workers, threads, dtype } = embedder;
  await embedder.dispose();
  console.log(JSON.stringify({ backend, dtype, workers, threads, ...figures, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
}

function options() {
  return { backend, workers: Number(values.workers ?? 1), threads: Number(values.threads ?? 1), dtype: (values.dtype ?? 'fp32') as Dtype };
}
