/**
 * The GPU check: parity and speed of the webgpu backend on whatever adapter
 * this machine has, in one go, without network or npm. `npm run gpu-bundle`
 * packs it with everything it needs; in a clone, `npx tsx scripts/gpu-check.ts`.
 *
 * Prints the adapter, parity with the upstream model on both test fixtures,
 * the adapter's matMul rate on the model's shapes, and tokens/s on a
 * full-size random checkpoint (made here, in the system's temp folder) for
 * 256 × 128, 64 × 512, 8 × 2048 and 1 × 8192 tokens (the median of three
 * passes after one that compiles), each as a fraction of what that matMul
 * rate allows, and against passes that keep one batch in flight instead of two. On a software adapter the sizes shrink to a
 * few texts (--quick does the same anywhere). Last, the GPU time of each
 * kernel over one batch of 128-token and one of 512-token texts (timestamp
 * queries), to show where the time goes. Exit code 1 when parity fails.
 *
 * Options: --quick, --parity-only, --json FILE, --max-batch-tokens N (default
 * 16384), --sets a,b,c,d (which of the benchmark sets to time).
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { selectBackend } from '../src/backends/select.js';
import { webGpuAdapter } from '../src/backends/webgpu/device.js';
import { loadEmbedder, type Embedder } from '../src/embedder.js';
import { ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { measureMatMul, rooflineShapes } from './bench/roofline.js';
import { flopsPerToken, loadSet, SETS, type SetName } from './bench/sets.js';
import { profileKernels } from './gpu-check/kernel-profile.js';
import { compareWithReference } from './gpu-check/parity.js';

const FIXTURES = fileURLToPath(new URL('../test/fixtures/', import.meta.url));
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    'parity-only': { type: 'boolean' },
    json: { type: 'string' },
    'max-batch-tokens': { type: 'string', default: '16384' },
    sets: { type: 'string' },
  },
});

const TIMED_PASSES = 3;
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const report: Record<string, unknown> = { date: new Date().toISOString() };

await selectBackend('webgpu');
const adapter = webGpuAdapter()!;
report.adapter = adapter;
console.log(`adapter: ${adapter.vendor}, ${adapter.architecture}, ${adapter.description} (${adapter.software ? 'software' : 'hardware'})`);
console.log(`limits: maxBufferSize ${adapter.maxBufferSize}, maxStorageBufferBindingSize ${adapter.maxStorageBufferBindingSize}`);

let parityPassed = true;
report.parity = [];
for (const fixture of ['nomic-tiny', 'nomic-tiny-ntk']) {
  const result = await compareWithReference(join(FIXTURES, fixture));
  (report.parity as unknown[]).push({ fixture, ...result });
  parityPassed &&= result.passed;
  const worst = result.outputs.map((o) => `${o.output} ${o.maxDiff.toExponential(2)} (≤ ${o.tolerance})`).join(', ');
  console.log(`parity ${fixture}: ${result.passed ? 'PASS' : 'FAIL'}: ${worst}`);
}

if (!values['parity-only']) {
  const quick = values.quick === true || adapter.software;
  const { best, rates } = await measureMatMul(rooflineShapes('webgpu', quick));
  report.matmul = { bestGflops: best, rates };
  console.log(`matMul: ${best.toFixed(1)} GFLOP/s at best (${Object.entries(rates).map(([s, r]) => `${s}: ${r.toFixed(0)}`).join(', ')}) [${elapsed()}]`);

  const model = ensureRandomCheckpoint(join(tmpdir(), 'nomic-embed-gpu-check'), join(FIXTURES, 'nomic-embed-text-v1.5', 'tokenizer.json'));
  console.log(`full-size random checkpoint at ${model} [${elapsed()}]`);
  const embedder = await loadEmbedder(model, { backend: 'webgpu' });
  const maxBatchTokens = Number(values['max-batch-tokens']);
  const sets = (values.sets?.split(',') ?? (quick ? ['a', 'b'] : ['a', 'b', 'c', 'd'])) as SetName[];
  for (const set of sets) if (!(set in SETS)) throw new Error(`--sets: no benchmark set '${set}' (there are ${Object.keys(SETS).join(', ')})`);
  const rows: Record<string, unknown>[] = [];
  for (const set of sets) {
    const all = loadSet(set);
    const texts = quick ? all.slice(0, set === 'a' ? 2 : 1) : all;
    // Warm-up: the first batch compiles shaders and grows buffers. A software adapter warms up on a
    // short text, which compiles the same shaders in a fraction of the time.
    const warmUp = quick ? [texts[0].split(' ').slice(0, 32).join(' ')] : texts.slice(0, 1);
    await embedder.embed(warmUp, { maxBatchTokens });
    // The first pass also compiles the shaders of shapes the warm-up did not have; the median of
    // three more is reported. A software adapter compiles in a fraction of its compute time and runs once.
    const first = quick ? undefined : await embedder.embed(texts, { maxBatchTokens });
    // Passes alternate with passes that keep one batch in flight instead of the GPU's two, for their ratio.
    const passes = [];
    const serialPasses = [];
    for (let pass = 0; pass < (quick ? 1 : TIMED_PASSES); pass++) {
      passes.push((await embedder.embed(texts, { maxBatchTokens })).stats);
      if (!quick) serialPasses.push(await oneBatchInFlight(embedder, async () => (await embedder.embed(texts, { maxBatchTokens })).stats));
    }
    const median = <T extends { wallTimeMs: number }>(all: T[]) => [...all].sort((a, b) => a.wallTimeMs - b.wallTimeMs)[all.length >> 1];
    const stats = median(passes);
    const serial = serialPasses.length > 0 ? median(serialPasses) : undefined;
    const rooflineTokens = (best * 1e9) / flopsPerToken(SETS[set].tokens);
    const row = {
      input: `${texts.length} × ${SETS[set].tokens} tokens`,
      tokensPerSecond: stats.tokensPerSecond,
      textsPerSecond: stats.textsPerSecond,
      seconds: stats.wallTimeMs / 1000,
      passSeconds: passes.map((p) => p.wallTimeMs / 1000),
      oneInFlightTokensPerSecond: serial?.tokensPerSecond,
      firstPassSeconds: first === undefined ? undefined : first.stats.wallTimeMs / 1000,
      batches: stats.batches,
      rooflineTokensPerSecond: rooflineTokens,
      fractionOfRoofline: stats.tokensPerSecond / rooflineTokens,
      peakTensorBytes: stats.measuredPeakBytes,
    };
    rows.push(row);
    console.log(
      `${row.input}: ${row.tokensPerSecond.toFixed(0)} tokens/s, ${row.textsPerSecond.toPrecision(3)} texts/s, ` +
        `${(row.fractionOfRoofline * 100).toFixed(0)}% of the matMul roofline (${rooflineTokens.toFixed(0)} tokens/s), ` +
        `${stats.batches} batches (${row.firstPassSeconds === undefined ? '' : `first pass ${row.firstPassSeconds.toFixed(2)} s, `}timed ${row.passSeconds.map((t) => t.toFixed(2)).join(', ')} s), peak tensors ${(row.peakTensorBytes / 2 ** 20).toFixed(0)} MiB` +
        `${serial === undefined ? '' : `; one batch in flight: ${serial.tokensPerSecond.toFixed(0)} tokens/s (${(stats.tokensPerSecond / serial.tokensPerSecond).toFixed(2)}× with two)`} [${elapsed()}]`,
    );
  }
  report.throughput = rows;

  const profiles: Record<string, unknown>[] = [];
  for (const set of ['a', 'b'] as const) {
    const profiled = loadSet(set).slice(0, quick ? 1 : Math.max(1, Math.floor(maxBatchTokens / SETS[set].tokens)));
    const profile = await profileKernels(() => embedder.embed(profiled, { maxBatchTokens }));
    profiles.push({ texts: profiled.length, tokens: SETS[set].tokens, ...profile });
    console.log(`kernel time over ${profiled.length} × ${SETS[set].tokens} tokens: ${profile.kernelMs.toFixed(1)} ms of ${profile.wallMs.toFixed(1)} ms wall (profiled)`);
    for (const { kernel, calls, ms } of profile.kernels.slice(0, 8)) {
      console.log(`  ${kernel.padEnd(28)} ${String(calls).padStart(5)} calls ${ms.toFixed(2).padStart(9)} ms ${((ms / profile.kernelMs) * 100).toFixed(1).padStart(5)}%`);
    }
  }
  report.kernelProfiles = profiles;
  await embedder.dispose();
}

report.seconds = (performance.now() - started) / 1000;
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(report, null, 2));
console.log(`done in ${elapsed()}: parity ${parityPassed ? 'passed' : 'FAILED'}`);
process.exitCode = parityPassed ? 0 : 1;

/** Runs `pass` with the embedder keeping one batch in flight. Its depth is fixed when it loads; the check lowers it for a comparison within one run. */
async function oneBatchInFlight<T>(embedder: Embedder, pass: () => Promise<T>): Promise<T> {
  const runner = embedder.runner as unknown as { inFlight: number };
  const depth = runner.inFlight;
  runner.inFlight = 1;
  try {
    return await pass();
  } finally {
    runner.inFlight = depth;
  }
}
