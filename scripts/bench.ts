/**
 * npm run bench [-- --backend(s) wasm,webgpu --sets a,b,c,d --workers 1,2 --fraction 0.25]
 *
 * Measures the model's throughput per backend on a full-size random checkpoint
 * (built once under weights/bench-random), next to the backend's raw matMul
 * rate measured in the same run: the roofline. Prints a table and writes JSON
 * to bench-results/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AUTO_ORDER, selectBackend, type BackendName } from '../src/backends/select.js';
import { webGpuAdapter } from '../src/backends/webgpu/device.js';
import { ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { flopsPerToken, SETS, type SetName } from './bench/sets.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    backends: { type: 'string' },
    backend: { type: 'string' },
    sets: { type: 'string', default: 'a,b,c,d' },
    workers: { type: 'string', default: `1,${availableParallelism()}` },
    fraction: { type: 'string', default: '1' },
  },
});

const model = ensureRandomCheckpoint(`${ROOT}weights/bench-random`, `${ROOT}test/fixtures/nomic-embed-text-v1.5/tokenizer.json`);
const backends = ((values.backends ?? values.backend)?.split(',') as BackendName[] | undefined) ?? (await availableBackends());
const sets = values.sets!.split(',') as SetName[];
const workerCounts = [...new Set(values.workers!.split(',').map(Number))];

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
const rows: string[][] = [['backend', 'workers', 'input', 'tokens/s', 'texts/s', 'roofline tok/s (1 thread or the GPU)', 'of roofline', 'peak RSS', 'peak tensors']];
for (const backend of backends) {
  const { matmulGflops, rates, adapter } = child(['--backend', backend, '--roofline']) as {
    matmulGflops: number;
    rates: Record<string, number>;
    adapter?: { description: string; software: boolean };
  };
  results.push({ backend, kind: 'roofline', matmulGflops, rates, adapter });
  const where = adapter === undefined ? 'on one thread' : `on ${adapter.description}${adapter.software ? ' (software)' : ''}`;
  console.error(`${backend}: raw matMul ${matmulGflops.toFixed(1)} GFLOP/s ${where}`);
  // Worker threads are how wasm uses several cores; every other backend runs in one.
  for (const workers of backend === 'wasm' ? workerCounts : [1]) {
    for (const set of sets) {
      console.error(`${backend}, ${workers} worker(s), ${SETS[set].label}...`);
      const r = child(['--model', model, '--backend', backend, '--workers', String(workers), '--set', set, '--fraction', values.fraction!]);
      const roofline = (matmulGflops * 1e9) / flopsPerToken(SETS[set].tokens);
      const fraction = (r.tokensPerSecond as number) / (roofline * workers);
      results.push({ ...r, kind: 'model', rooflineTokensPerSecond: roofline, fractionOfRoofline: fraction });
      rows.push([
        backend,
        String(workers),
        SETS[set].label,
        (r.tokensPerSecond as number).toFixed(1),
        (r.textsPerSecond as number).toPrecision(3),
        roofline.toFixed(1),
        `${(fraction * 100).toFixed(0)}%${workers > 1 ? ` of ${workers}×` : ''}`,
        `${((r.peakRssBytes as number) / 2 ** 30).toFixed(2)} GiB`,
        `${((r.peakTensorBytes as number) / 2 ** 30).toFixed(2)} GiB`,
      ]);
    }
  }
}

const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
console.log(rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n'));
for (const backend of backends) {
  for (const set of sets) {
    const bySize = workerCounts.map((w) => results.find((r) => r.backend === backend && r.workers === w && r.set === set)?.tokensPerSecond as number);
    if (workerCounts.length > 1 && bySize.every(Number.isFinite)) {
      console.log(`${backend} ${SETS[set].label}: ${workerCounts.at(-1)} workers run ${(bySize.at(-1)! / bySize[0]).toFixed(2)}× the tokens/s of ${workerCounts[0]}`);
    }
  }
}
mkdirSync(`${ROOT}bench-results`, { recursive: true });
const out = `${ROOT}bench-results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), fraction: Number(values.fraction), results }, null, 2));
console.error(`wrote ${out}`);
