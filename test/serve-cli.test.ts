import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const texts = reference('nomic-tiny').texts;
const long = texts.find((t) => t.name === 'long_paragraph')!.text;

interface Served {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `nomic-embed serve` on a free port and waits until it serves. */
async function startServe(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--model', fixtureDir('nomic-tiny'), '--port', '0', '--backend', 'wasm', ...args], {
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${stderr}`)), 60_000);
    child.stderr!.on('data', () => {
      const match = /listening on (http:\/\/\S+),/.exec(stderr);
      if (match !== null && /serving on wasm/.test(stderr)) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exit.then((code) => reject(new Error(`serve exited with ${code}:\n${stderr}`)));
  });
  return { child, url, stderr: () => stderr, exit };
}

let running: Served | undefined;
afterEach(() => {
  running?.child.kill('SIGKILL');
  running = undefined;
});

describe('nomic-embed serve', () => {
  it('serves, and on SIGTERM lets the requests in flight finish, frees the model and exits 0', async () => {
    // One long text per batch: 120 of them keep the server busy for a while.
    running = await startServe(['--max-batch-tokens', '400', '--max-queue-tokens', '100000', '--batch-wait-ms', '0']);
    const input = Array.from({ length: 120 }, () => long);
    const inFlight = fetch(`${running.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: [texts[0].text, ...input] }),
    });
    // Wait until batches run, then ask it to stop.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const metrics = await (await fetch(`${running.url}/metrics`)).text();
      if (Number(/^nomic_embed_batches_total (\S+)$/m.exec(metrics)?.[1]) >= 1) break;
      if (Date.now() > deadline) throw new Error(`no batch ran within 30 s:\n${running.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    running.child.kill('SIGTERM');
    const response = await inFlight;
    expect(response.status).toBe(200);
    const body = (await response.json()) as { data: { embedding: number[] }[] };
    expect(body.data).toHaveLength(121);
    expectClose(body.data[0].embedding, texts[0].embedding, TOLERANCE.embedding, texts[0].name);
    expect(await running.exit).toBe(0);
    expect(running.stderr()).toMatch(/SIGTERM: finishing requests in flight/);
    expect(running.stderr()).toMatch(/stopped/);
  });

  it('takes its API key from NOMIC_EMBED_API_KEY', async () => {
    running = await startServe([], { NOMIC_EMBED_API_KEY: 'from-env' });
    const ask = (key?: string) =>
      fetch(`${running!.url}/embed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: JSON.stringify({ inputs: 'hello' }),
      });
    expect((await ask()).status).toBe(401);
    expect((await ask('from-env')).status).toBe(200);
    running.child.kill('SIGINT');
    expect(await running.exit).toBe(0);
  });

  it.each([
    [['--default-task', 'search'], /defaultTask: unknown task "search"/],
    [['--max-connections', '0'], /max-connections/],
    [['--headers-timeout-ms', '90000'], /headersTimeoutMs: 90000 is longer than requestTimeoutMs \(60000\)/],
    [['--model', 'no/such/thing'], /--model no\/such\/thing: no such folder/],
  ])('exits 2 on a bad option, naming it: %j', async (args, message) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--model', fixtureDir('nomic-tiny'), '--port', '0', ...args]);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});
