/**
 * The server under an operator's traffic, as a subprocess: a short soak of
 * valid and hostile requests on all three APIs with slow clients, then a
 * drain with slow connections still open. `npm run soak` runs the same for
 * longer and prints figures.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { embedRequests, startFixtureServe, type FixtureServe } from '../scripts/soak/fixture-serve.js';
import { drainWithSlowClients, residentMiB } from '../scripts/soak/serve-process.js';
import { runTraffic, TRAFFIC_KINDS, type TrafficReport } from '../scripts/soak/traffic.js';

const SECONDS = 20;
const DRAIN_SLOW = 300;

/** The median of `values`. */
const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];

describe('nomic-embed serve under a soak', () => {
  let served: FixtureServe;
  let report: TrafficReport;
  const resident: number[] = [];

  afterAll(() => served?.server.child.kill('SIGKILL'));

  it(`answers ${SECONDS} s of mixed traffic with the right vectors and the right refusals, its memory flat`, async () => {
    // Every collection a full one: the live heap is then known several times a second.
    served = await startFixtureServe({ extraConnections: DRAIN_SLOW, traceGc: true });
    report = await runTraffic({
      ...served.traffic,
      seconds: SECONDS,
      clients: 12,
      slowClients: 4,
      onSecond: () => resident.push(residentMiB(served.server.child.pid!)),
    });
    expect(report.failures).toEqual([]);
    for (const kind of TRAFFIC_KINDS) expect(report.answered[kind], kind).toBeGreaterThan(0);
    // Slow clients trickle headers past the 2 s header timeout and are cut off with 408.
    expect(report.slowCutOff).toBeGreaterThan(0);

    // After a warm-up (JIT, tokenizer caches, tfjs's first batches), the live heap after full
    // collections holds still. A request that stayed referenced (an abort listener left on a
    // long-lived signal did) grows it by about 5 KB per request: 5–10 MiB over this run.
    const live = served.server.liveHeap;
    expect(live.length).toBeGreaterThan(40);
    const quarter = Math.floor(live.length / 4);
    const early = median(live.slice(quarter, 2 * quarter).map((h) => h.mib));
    const late = median(live.slice(3 * quarter).map((h) => h.mib));
    expect(late - early, `live heap ${early} MiB in the second quarter, ${late} MiB in the last`).toBeLessThan(2);
    // Resident memory includes the wasm heap, which never shrinks; past the warm-up it stays within a band.
    const warm = resident.slice(Math.floor(resident.length / 4));
    expect(Math.max(...warm) - warm[0], `resident MiB by second: ${resident.map((r) => r.toFixed(0)).join(' ')}`).toBeLessThan(48);
  });

  it(`drains in under a second on SIGTERM with ${DRAIN_SLOW} slow connections open, answering the requests it had`, async () => {
    const drain = await drainWithSlowClients(served.server, DRAIN_SLOW, () => embedRequests(served.traffic, 8));
    expect(drain.slowOpen).toBe(DRAIN_SLOW);
    expect(drain.inFlight).toEqual(Array(8).fill(200));
    expect(drain.exitCode, served.server.stderr()).toBe(0);
    expect(drain.slowClosedMs).toBeLessThan(1000);
    expect(drain.drainMs).toBeLessThan(1000);
  });
});
