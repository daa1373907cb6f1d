/**
 * `nomic-embed serve` as a child process, as an operator runs it: started
 * from the built CLI, watched for resident memory, and stopped with SIGTERM
 * while slow clients hold connections, timing the drain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/helpers/free-port.js';
import { rawConnection } from './traffic.js';

const BIN = fileURLToPath(new URL('../../dist/cli/bin.js', import.meta.url));

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly stderr: () => string;
  /** The exit code (null if killed by a signal). */
  readonly exit: Promise<number | null>;
  /**
   * With `traceGc`: the main thread's live JS heap after each full
   * collection, in MiB, by ms since the process started, as V8 reports it.
   */
  readonly liveHeap: { ms: number; mib: number }[];
}

export interface ServeProcessOptions {
  /**
   * Makes every collection a full one and reports each (`--trace-gc
   * --gc-global`), so that the live heap is known several times a second
   * rather than after the rare full collection: a leak shows within seconds.
   * Collections then take about a tenth of the time.
   */
  readonly traceGc?: boolean;
  readonly timeoutMs?: number;
}

// "[pid:0xisolate]    1234 ms: Mark-Compact 37.5 (56.3) -> 21.5 (56.3) MB, ..."
const FULL_GC = /^\[\d+:(0x[0-9a-f]+)\]\s+(\d+) ms: Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/;

/** Starts `nomic-embed serve ARGS --port <free> --quiet` and resolves once /health answers 200. */
export async function startServeProcess(args: readonly string[], { traceGc = false, timeoutMs = 120_000 }: ServeProcessOptions = {}): Promise<ServeProcess> {
  const port = await freePort();
  const nodeArgs = traceGc ? ['--trace-gc', '--gc-global'] : [];
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'serve', ...args, '--host', '127.0.0.1', '--port', String(port), '--quiet'], {
    stdio: ['ignore', traceGc ? 'pipe' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const liveHeap: { ms: number; mib: number }[] = [];
  if (traceGc) {
    // The main thread's isolate is the first to collect; worker threads' isolates are others.
    let mainIsolate: string | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = FULL_GC.exec(line);
      if (match === null) return;
      mainIsolate ??= match[1];
      if (match[1] === mainIsolate) liveHeap.push({ ms: Number(match[2]), mib: Number(match[3]) });
    });
  }
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exited = false;
  void exit.then(() => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) throw new Error(`serve exited with ${await exit} before serving:\n${stderr}`);
    const status = await fetch(`${url}/health`).then((r) => r.status, () => 0);
    if (status === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not answer /health with 200 within ${timeoutMs} ms:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url, stderr: () => stderr, exit, liveHeap };
}

/** The process's resident memory in MiB, from /proc (Linux). */
export function residentMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) / 1024;
}

export interface DrainReport {
  /** Slow connections open when SIGTERM was sent. */
  readonly slowOpen: number;
  /** ms from SIGTERM to the process's exit. */
  readonly drainMs: number;
  /** ms from SIGTERM until every slow connection was closed. */
  readonly slowClosedMs: number;
  readonly exitCode: number | null;
  /** Statuses of the requests whose bodies had arrived when SIGTERM was sent. */
  readonly inFlight: number[];
}

/**
 * Opens `slow` connections that send half their headers and no more, starts
 * `requests` (each resolving to a status), sends SIGTERM once they have been
 * sent, and times the drain.
 */
export async function drainWithSlowClients(server: ServeProcess, slow: number, requests: () => Promise<number>[]): Promise<DrainReport> {
  const connections = [];
  for (let i = 0; i < slow; i += 100) {
    connections.push(...(await Promise.all(Array.from({ length: Math.min(100, slow - i) }, () => rawConnection(server.url)))));
  }
  for (const connection of connections) connection.socket.write('POST /embed HTTP/1.1\r\nHost: soak\r\n');
  let closed = 0;
  for (const connection of connections) void connection.closed.then(() => closed++);
  const answers = requests();
  // Their bodies are on the wire; a moment for the server to have read them.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const slowOpen = connections.length - closed;
  const sent = performance.now();
  server.child.kill('SIGTERM');
  const slowClosed = Promise.all(connections.map((c) => c.closed)).then(() => performance.now() - sent);
  const exitCode = await server.exit;
  const drainMs = performance.now() - sent;
  const slowClosedMs = await Promise.race([slowClosed, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 1000))]);
  for (const connection of connections) connection.socket.destroy();
  return { slowOpen, drainMs, slowClosedMs, exitCode, inFlight: await Promise.all(answers.map((a) => a.catch(() => 0))) };
}
