/**
 * npm run bench [-- --backend(s) wasm,webgpu --sets a,b,c,d --configs 1x1,2x1,1x2 --dtypes fp32,q8 --fraction 0.25 --startups 5]
 *
 * Measures the model per backend on a full-size random checkpoint (built once
 * under weights/bench-random): throughput per benchmark set next to the
 * backend's raw matMul rate measured in the same run (the roofline), and
 * start-up: the time to read the weights file, to load, the first call, the
 * median single-text latency and resident memory. On wasm each runs per
 * configuration of worker threads × wasm threads, in each weight precision
 * (`--dtypes`, on wasm fp32 and q8, q8 from the converter's q8 checkpoint of
 * the same weights, with q8's fidelity against fp32 on the first set and its
 * speed as ratios). Start-up figures move by
 * ±10% from one process to the next on a shared machine: `--startups N` runs
 * N start-ups per configuration and reports each figure's median, and the
 * median of each run's ratios. Then `--concurrent-calls N` (32) single-text
 * calls at once against the same calls one after another, on the fixture
 * model (wasm): what the embedder's one queue gains by batching them. Prints
 * tables and writes JSON to bench-results/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AUTO_ORDER, selectBackend, type BackendName } from '../src/backends/select.js';
import { webGpuAdapter } from '../src/backends/webgpu/device.js';
import { ensureQ8Checkpoint, ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { benchSearch } from './bench/search.js';
import { flopsPerToken, SETS, type SetName } from './bench/sets.js';
import type { Dtype } from '../src/model/projection.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const cores = availableParallelism();
const { values } = parseArgs({
  options: {
    backends: { type: 'string' },
    backend: { type: 'string' },
    sets: { type: 'string', default: 'a,b,c,d' },
    // workers×threads per wasm run: one thread; the worker pool; the threaded build.
    configs: { type: 'string', default: [...new Set(['1x1', `${cores}x1`, `1x${cores}`])].join(',') },
    fraction: { type: 'string', default: '1' },
    startups: { type: 'string', default: '1' },
    dtypes: { type: 'string', default: 'fp32,q8' },
    'concurrent-calls': { type: 'string', default: '32' },
  },
});
const startups = Number(values.startups);
if (!Number.isInteger(startups) || startups < 1) throw new Error(`--startups must be a whole number ≥ 1, not ${values.startups}`);

const model = ensureRandomCheckpoint(`${ROOT}weights/bench-random`, `${ROOT}test/fixtures/nomic-embed-text-v1.5/tokenizer.json`);
const backends = ((values.backends ?? values.backend)?.split(',') as BackendName[] | undefined) ?? (await availableBackends());
const sets = values.sets!.split(',').filter((s) => s !== '') as SetName[];
const dtypes = values.dtypes!.split(',') as Dtype[];
// q8 runs load the converter's q8 checkpoint of the same weights: the same codes as quantizing at load, read as they are.
const modelFor = (dtype: Dtype) => (dtype === 'q8' ? ensureQ8Checkpoint(model, `${ROOT}weights/bench-random-q8`) : model);
const configs = values.configs!.split(',').map((c) => {
  const [workers, threads] = c.split('x').map(Number);
  return { workers, threads, label: `${workers}w×${threads}t` };
});

/**
 * Every installed backend except plain JavaScript and WebGPU on a software
 * adapter, which would take hours at full size (ask for them by name).
 */
async function availableBackends(): Promise<BackendName[]> {
  const found: BackendName[] = [];
  for (const name of AUTO_ORDER.filter((b) => b !== 'cpu')) {
    if (!(await selectBackend(name).then(() => true, () => false))) continue;
    if (name === 'webgpu' && webGpuAdapter()?.software !== false) continue;
    found.push(name);
  }
  return found;
}

function child(args: string[]): Record<string, unknown> {
  const run = spawnSync(process.execPath, ['--import', 'tsx', `${ROOT}scripts/bench/run-one.ts`, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = run.stdout.trim().split('\n').pop() ?? '';
  if (run.status !== 0 || !line.startsWith('{')) throw new Error(`benchmark step ${args.join(' ')} failed:\n${run.stderr}`);
  return JSON.parse(line);
}

const results: Record<string, unknown>[] = [];
const rows: string[][] = [['backend', 'dtype', 'workers × threads', 'input', 'tokens/s', 'texts/s', 'roofline tok/s', 'of roofline', 'RSS after the call', 'peak RSS', 'peak tensors']];
const startupRows: string[][] = [
  ['backend', 'dtype', 'workers × threads', 'file read', 'load', 'load / read', 'first call', 'second call', 'first / second', 'one text (median)', 'RSS after warm-up', 'peak RSS'],
];
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
/** Each numeric field's median over the runs; other fields as the first run has them. */
const medianOf = (runs: Record<string, number>[]) =>
  Object.fromEntries(Object.entries(runs[0]).map(([key, value]) => [key, typeof value === 'number' ? median(runs.map((r) => r[key])) : value])) as Record<string, number>;
for (const backend of backends) {
  const { matmulGflops, rates, adapter } = child(['--backend', backend, '--roofline']) as {
    matmulGflops: number;
    rates: Record<string, number>;
    adapter?: { description: string; software: boolean };
  };
  results.push({ backend, kind: 'roofline', matmulGflops, rates, adapter });
  const where = adapter === undefined ? 'on one thread' : `on ${adapter.description}${adapter.software ? ' (software)' : ''}`;
  console.error(`${backend}: raw matMul ${matmulGflops.toFixed(1)} GFLOP/s ${where}`);
  // Threads and worker threads are how wasm uses several cores; the other backends do it themselves.
  const runsOf =
    backend === 'wasm'
      ? configs.flatMap((config) => dtypes.map((dtype) => ({ config, dtype })))
      : [{ config: { workers: 1, threads: 1, label: '1w×1t' }, dtype: 'fp32' as Dtype }];
  for (const { config, dtype } of runsOf) {
    const args = ['--model', modelFor(dtype), '--backend', backend, '--workers', String(config.workers), '--threads', String(config.threads), '--dtype', dtype];
    console.error(`${backend}, ${dtype}, ${config.label}: start-up${startups > 1 ? ` ×${startups}` : ''}...`);
    const runs = Array.from({ length: startups }, () => child([...args, '--startup']) as Record<string, number>);
    const s = medianOf(runs);
    results.push({ ...s, kind: 'startup', config: config.label, dtype, runs });
    const ratio = (a: string, b: string) => `${median(runs.map((r) => r[a] / r[b])).toFixed(2)}×${startups > 1 ? ` (${range(runs.map((r) => r[a] / r[b]))})` : ''}`;
    startupRows.push([
      backend,
      dtype,
      config.label,
      `${s.readMs.toFixed(0)} ms`,
      `${(s.loadMs / 1000).toFixed(2)} s`,
      ratio('loadMs', 'readMs'),
      `${s.firstCallMs.toFixed(0)} ms`,
      `${s.secondCallMs.toFixed(0)} ms`,
      ratio('firstCallMs', 'secondCallMs'),
      `${s.singleTextMs.toFixed(0)} ms`,
      gib(s.rssAfterWarmUpBytes),
      gib(s.peakRssBytes),
    ]);
    for (const set of sets) {
      console.error(`${backend}, ${dtype}, ${config.label}, ${SETS[set].label}...`);
      const r = child([...args, '--set', set, '--fraction', values.fraction!]);
      const roofline = (matmulGflops * 1e9) / flopsPerToken(SETS[set].tokens);
      // On wasm the roofline is one thread's: the run is held to it times the cores it used.
      const used = backend === 'wasm' ? config.workers * config.threads : 1;
      const fraction = (r.tokensPerSecond as number) / (roofline * used);
      results.push({ ...r, config: config.label, dtype, kind: 'model', rooflineTokensPerSecond: roofline, fractionOfRoofline: fraction });
      rows.push([
        backend,
        dtype,
        config.label,
        SETS[set].label,
        (r.tokensPerSecond as number).toFixed(1),
        (r.textsPerSecond as number).toPrecision(3),
        roofline.toFixed(1),
        `${(fraction * 100).toFixed(0)}%${used > 1 ? ` of ${used}×` : ''}`,
        gib(r.rssAfterCallBytes as number),
        gib(r.peakRssBytes as number),
        gib(r.peakTensorBytes as number),
      ]);
    }
  }
}

const table = (t: string[][]) => {
  const widths = t[0].map((_, c) => Math.max(...t.map((r) => r[c].length)));
  return t.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n');
};
console.log(table(rows));
console.log();
console.log(table(startupRows));
// The threaded build against the worker pool, on the same cores.
const pick = (label: string, kind: string, set?: string, dtype: Dtype = 'fp32') =>
  results.find((r) => r.backend === 'wasm' && r.config === label && r.dtype === dtype && (r.kind ?? 'model') === kind && (set === undefined || r.set === set));
const pool = `${cores}w×1t`;
const threaded = `1w×${cores}t`;
if (cores > 1 && pick(pool, 'startup') && pick(threaded, 'startup')) {
  const ratio = (a: unknown, b: unknown) => ((a as number) / (b as number)).toFixed(2);
  for (const set of sets) {
    const [t, p] = [pick(threaded, 'model', set), pick(pool, 'model', set)];
    if (t && p) console.log(`wasm ${SETS[set].label}: threads give ${ratio(t.tokensPerSecond, p.tokensPerSecond)}× the tokens/s of the ${cores}-worker pool`);
  }
  const [ts, ps] = [pick(threaded, 'startup')!, pick(pool, 'startup')!];
  console.log(`wasm: threads take ${ratio(ts.rssAfterWarmUpBytes, ps.rssAfterWarmUpBytes)}× the RSS after warm-up and ${ratio(ts.singleTextMs, ps.singleTextMs)}× the single-text latency of the pool`);
}
// q8 against fp32 in each configuration: speed as ratios of the same run, then fidelity on the first set.
if (backends.includes('wasm') && dtypes.includes('q8') && dtypes.includes('fp32')) {
  const ratio = (a: unknown, b: unknown) => ((a as number) / (b as number)).toFixed(2);
  for (const { label } of configs) {
    for (const set of sets) {
      const [q, f] = [pick(label, 'model', set, 'q8'), pick(label, 'model', set, 'fp32')];
      if (q && f) console.log(`wasm ${label} ${SETS[set].label}: q8 gives ${ratio(q.tokensPerSecond, f.tokensPerSecond)}× fp32's tokens/s`);
    }
    const [q, f] = [pick(label, 'startup', undefined, 'q8'), pick(label, 'startup', undefined, 'fp32')];
    if (q && f) {
      console.log(
        `wasm ${label}: q8 takes ${ratio(q.singleTextMs, f.singleTextMs)}× fp32's single-text latency (${(q.singleTextMs as number).toFixed(0)} ms), ` +
          `${ratio(q.rssAfterWarmUpBytes, f.rssAfterWarmUpBytes)}× its RSS after warm-up, and loads in ${ratio(q.loadMs, q.readMs)}× reading the file`,
      );
    }
  }
  if (sets.length > 0) {
    const last = configs[configs.length - 1];
    console.error(`wasm, q8 against fp32 on ${SETS[sets[0]].label}...`);
    const fidelity = child(['--model', model, '--backend', 'wasm', '--workers', String(last.workers), '--threads', String(last.threads), '--fidelity', '--set', sets[0], '--fraction', values.fraction!]);
    results.push(fidelity);
    console.log(
      `wasm q8 against fp32, ${fidelity.texts as number} texts of ${SETS[sets[0]].label}: cosine ${(fidelity.meanCosine as number).toFixed(5)} on average, ` +
        `${(fidelity.worstCosine as number).toFixed(5)} at worst; ${((fidelity.meanTop10Overlap as number) * 100).toFixed(1)}% of each text's top-10 neighbours the same`,
    );
  }
}
const concurrentCalls = Number(values['concurrent-calls']);
if (concurrentCalls > 0) {
  console.error(`wasm, nomic-tiny: ${concurrentCalls} single-text calls, at once and one after another...`);
  const c = child(['--model', `${ROOT}test/fixtures/nomic-tiny`, '--backend', 'wasm', '--concurrent', String(concurrentCalls)]);
  results.push(c);
  const speedUp = (c.sequentialMs as number) / (c.concurrentMs as number);
  const speedUps = c.speedUps as number[];
  console.log(
    `wasm, nomic-tiny: ${concurrentCalls} single-text embed calls made at once finish ${speedUp.toFixed(1)}× faster than one after another ` +
      `(${(c.concurrentMs as number).toFixed(1)} ms against ${(c.sequentialMs as number).toFixed(1)} ms, medians; ${range(speedUps)}× over ${speedUps.length} rounds), ` +
      (c.identical ? 'with the vectors of one call holding all the texts, bit for bit' : 'BUT THE VECTORS DIFFER from one call holding all the texts') +
      `; ${(c.maxDifference as number).toExponential(1)} at most from each text embedded alone`,
  );
  if (!c.identical) process.exitCode = 1;
}
const search = benchSearch();
results.push({ kind: 'search', ...search });
console.log(
  `search, top-10 over ${search.rows.toLocaleString('en-US')} ${search.dimensions}-d vectors: ` +
    `${search.cosineMs.toFixed(1)} ms by cosine (float32), ${search.hammingMs.toFixed(1)} ms by Hamming distance (binary)`,
);
mkdirSync(`${ROOT}bench-results`, { recursive: true });
const out = `${ROOT}bench-results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), fraction: Number(values.fraction), results }, null, 2));
console.error(`wrote ${out}`);
