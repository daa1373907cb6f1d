/**
 * npm run bench:serve [-- --backend wasm --levels 1,8,64 --requests 64 --max-texts 32 --words 128 --batch-wait-ms N]
 *
 * The HTTP service under closed-loop load on loopback, on the full-size random
 * checkpoint: for each concurrency level, that many clients send requests of
 * 1 to --max-texts benchmark texts (128 tokens each, or --words words) back to
 * back until --requests have been answered. Prints requests/s, tokens/s and
 * p50/p99 latency per level, the served tokens/s at the highest level over the
 * library's own tokens/s on the same texts in one call, and the latency one
 * single-text request adds over a direct library call. The library and that
 * latency are measured first, in this process; the load runs against a
 * server alone in a child process.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadEmbedder } from '../src/embedder.js';
import { serve } from '../src/server/serve.js';
import { ensureRandomCheckpoint } from './bench/random-checkpoint.js';
import { loadSet } from './bench/sets.js';
import { percentile } from './soak/traffic.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    levels: { type: 'string', default: '1,8,64' },
    requests: { type: 'string', default: '64' },
    'max-texts': { type: 'string', default: '32' },
    words: { type: 'string', default: '128' },
    'latency-runs': { type: 'string', default: '20' },
    'batch-wait-ms': { type: 'string' },
  },
});
const levels = values.levels!.split(',').map(Number);
const requestsPerLevel = Number(values.requests);
const maxTexts = Number(values['max-texts']);
const words = Number(values.words);
const model = ensureRandomCheckpoint(`${ROOT}weights/bench-random`, `${ROOT}test/fixtures/nomic-embed-text-v1.5/tokenizer.json`);
// Each benchmark word is one token; [CLS] and [SEP] make two more.
const pool = loadSet('a').map((t) => t.split(' ').slice(0, Math.max(1, words - 2)).join(' '));

/** A fixed, varied sequence of request sizes: the same for every level. */
function requestSizes(count: number): number[] {
  let state = 12345;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return 1 + (state % maxTexts);
  });
}
const sizes = requestSizes(requestsPerLevel);
const requestTexts = (i: number) => Array.from({ length: sizes[i] }, (_, j) => pool[(i * 7 + j) % pool.length]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const latencyRuns = Number(values['latency-runs']);
const single = pool[0].split(' ').slice(0, 12).join(' ');

// The library, offline: every text of one level's requests in one call.
const embedder = await loadEmbedder(model, { backend: values.backend as 'auto' });
const backend = embedder.backend;
await embedder.embed(pool.slice(0, 2));
const allTexts = sizes.flatMap((_, i) => requestTexts(i));
const offline = (await embedder.embed(allTexts)).stats;
console.error(`library on ${backend}: ${offline.tokensPerSecond.toFixed(1)} tokens/s offline`);

// The latency the server adds to one short text: the same embedder served in this process, and
// direct calls and HTTP requests taken in turn, so that the machine's drift hits both alike.
const inProcess = await serve(embedder, { port: 0, ...(values['batch-wait-ms'] === undefined ? {} : { batchWaitMs: Number(values['batch-wait-ms']) }) });
const direct: number[] = [];
const served: number[] = [];
for (let i = 0; i < latencyRuns; i++) {
  let started = performance.now();
  await embedder.embed([single]);
  direct.push(performance.now() - started);
  started = performance.now();
  await embedOverHttp(inProcess.url, [single]);
  served.push(performance.now() - started);
}
await inProcess.close();
await embedder.dispose();

// The server, in a process of its own.
const serverArgs = ['serve', '--model', model, '--port', '0', '--backend', backend];
if (values['batch-wait-ms'] !== undefined) serverArgs.push('--batch-wait-ms', values['batch-wait-ms']);
const child = spawn(process.execPath, ['--import', 'tsx', `${ROOT}src/cli/bin.ts`, ...serverArgs], {
  stdio: ['ignore', 'ignore', 'pipe'],
});
let stderr = '';
child.stderr!.on('data', (d) => (stderr += d));
const url = await new Promise<string>((resolve, reject) => {
  child.stderr!.on('data', () => {
    const match = /listening on (\S+),/.exec(stderr);
    if (match !== null && stderr.includes('serving on')) resolve(match[1]);
  });
  child.on('exit', (code) => reject(new Error(`the server exited with ${code}:\n${stderr}`)));
});

async function embedOverHttp(base: string, input: string[]): Promise<{ ms: number; tokens: number }> {
  const started = performance.now();
  const response = await fetch(`${base}/v1/embeddings`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, encoding_format: 'base64' }),
  });
  const body = (await response.json()) as { usage?: { total_tokens: number }; error?: unknown };
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body)}`);
  return { ms: performance.now() - started, tokens: body.usage!.total_tokens };
}

try {
  await embedOverHttp(url, pool.slice(0, 2));
  const rows: string[][] = [['concurrency', 'requests', 'requests/s', 'tokens/s', 'p50 ms', 'p99 ms']];
  let lastTokensPerSecond = 0;
  for (const concurrency of levels) {
    let next = 0;
    let tokens = 0;
    const latencies: number[] = [];
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < requestsPerLevel; i = next++) {
          const result = await embedOverHttp(url, requestTexts(i));
          latencies.push(result.ms);
          tokens += result.tokens;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    lastTokensPerSecond = tokens / seconds;
    rows.push([String(concurrency), String(requestsPerLevel), (requestsPerLevel / seconds).toFixed(2), lastTokensPerSecond.toFixed(1), percentile(latencies, 50).toFixed(0), percentile(latencies, 99).toFixed(0)]);
    console.error(`concurrency ${concurrency}: done in ${seconds.toFixed(1)} s`);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log(rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n'));
  console.log(
    `served tokens/s at concurrency ${levels.at(-1)} over the library's offline tokens/s: ${(lastTokensPerSecond / offline.tokensPerSecond).toFixed(2)} ` +
      `(${lastTokensPerSecond.toFixed(1)} / ${offline.tokensPerSecond.toFixed(1)}; target ≥ 0.85)`,
  );
  console.log(
    `one short text: ${median(served).toFixed(1)} ms over HTTP, ${median(direct).toFixed(1)} ms from the library: ` +
      `${(median(served) - median(direct)).toFixed(1)} ms added (target ≤ 5 ms)`,
  );
} finally {
  child.kill('SIGTERM');
}
