/**
 * npm run soak [-- --seconds 60 --clients 24 --slow-clients 8 --drain-slow 800 --backend wasm --trace-gc]
 *
 * `nomic-embed serve` on the tiny fixture model, as a child process, under
 * mixed traffic for --seconds (see scripts/soak/traffic.ts): every answer
 * checked, its resident memory sampled every second. Then --drain-slow
 * connections that never finish their headers are opened, eight requests
 * sent, and SIGTERM: the drain is timed. Prints requests served by kind,
 * latency percentiles, memory over time and the drain; exits 1 on any
 * failure.
 */
import { parseArgs } from 'node:util';
import { embedRequests, startFixtureServe } from './soak/fixture-serve.js';
import { drainWithSlowClients, residentMiB } from './soak/serve-process.js';
import { percentile, runTraffic } from './soak/traffic.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    clients: { type: 'string', default: '24' },
    'slow-clients': { type: 'string', default: '8' },
    'drain-slow': { type: 'string', default: '800' },
    backend: { type: 'string', default: 'wasm' },
    'trace-gc': { type: 'boolean', default: false },
  },
});
const drainSlow = Number(values['drain-slow']);

const served = await startFixtureServe({ backend: values.backend, extraConnections: drainSlow, traceGc: values['trace-gc'] });
const { server } = served;
const pid = server.child.pid!;
console.log(`serving on ${served.backend} at ${server.url} (pid ${pid}); ${values.clients} clients and ${values['slow-clients']} slow ones for ${values.seconds} s`);

// Resident memory, and the JS heap and external (ArrayBuffer, wasm) memory the server reports in /metrics.
const memory: { second: number; rssMiB: number; heapMiB: number; externalMiB: number }[] = [];
const started = Date.now();
const sampleMemory = async () => {
  const { heap, external } = await served.metricsMiB();
  memory.push({ second: Math.round((Date.now() - started) / 1000), rssMiB: residentMiB(pid), heapMiB: heap, externalMiB: external });
};
const report = await runTraffic({
  ...served.traffic,
  seconds: Number(values.seconds),
  clients: Number(values.clients),
  slowClients: Number(values['slow-clients']),
  onSecond: () => void sampleMemory(),
});

const total = Object.values(report.answered).reduce((a, b) => a + b, 0);
console.log(`\nrequests: ${total} in ${values.seconds} s (${(total / Number(values.seconds)).toFixed(1)}/s); slow clients cut off with 408: ${report.slowCutOff}`);
for (const [kind, count] of Object.entries(report.answered).sort()) console.log(`  ${kind.padEnd(32)} ${count}`);
const ms = (p: number) => `${percentile(report.latenciesMs, p).toFixed(1)} ms`;
console.log(`valid requests' latency: p50 ${ms(50)}, p90 ${ms(90)}, p99 ${ms(99)}, max ${ms(100)}`);
const step = Math.max(1, Math.floor(memory.length / 12));
console.log('memory (MiB): second, resident, JS heap used, external');
for (const m of memory.filter((_, i) => i % step === 0 || i === memory.length - 1)) {
  console.log(`  ${String(m.second).padStart(4)} s ${m.rssMiB.toFixed(0).padStart(6)} ${m.heapMiB.toFixed(1).padStart(7)} ${m.externalMiB.toFixed(1).padStart(7)}`);
}

if (server.liveHeap.length > 0) {
  const every = Math.max(1, Math.floor(server.liveHeap.length / 12));
  const shown = server.liveHeap.filter((_, i) => i % every === 0 || i === server.liveHeap.length - 1);
  console.log(`live JS heap after full collections (MiB), of ${server.liveHeap.length}: ${shown.map((h) => `${(h.ms / 1000).toFixed(0)}s ${h.mib}`).join(', ')}`);
}

const drain = await drainWithSlowClients(server, drainSlow, () => embedRequests(served.traffic, 8));
console.log(
  `drain: SIGTERM with ${drain.slowOpen} slow connections open and 8 requests sent: slow connections closed in ${drain.slowClosedMs.toFixed(0)} ms, ` +
    `requests answered ${drain.inFlight.join(',')}, exit ${drain.exitCode} after ${drain.drainMs.toFixed(0)} ms`,
);

const failures = [...report.failures];
if (drain.exitCode !== 0) failures.push(`serve exited ${drain.exitCode}:\n${server.stderr()}`);
if (drain.inFlight.some((s) => s !== 200)) failures.push(`requests in flight at SIGTERM answered ${drain.inFlight.join(',')}`);
if (drain.drainMs >= 1000 || drain.slowClosedMs >= 1000) failures.push(`the drain took ${drain.drainMs.toFixed(0)} ms (slow connections closed after ${drain.slowClosedMs.toFixed(0)} ms); it must take under 1 s`);
if (failures.length > 0) {
  console.log(`\n${failures.length} failures:\n${failures.join('\n')}`);
  process.exit(1);
}
