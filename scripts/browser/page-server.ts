import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';

export interface PageFaults {
  /** Paths answered 200 with this file's bytes, one byte in its safetensors header flipped. */
  readonly corrupt?: readonly string[];
  /** Paths whose answer sends this many bytes, then nothing more (the connection stays open). */
  readonly stall?: Readonly<Record<string, number>>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
};

/**
 * A static server on 127.0.0.1 for pages under test: each URL prefix maps to
 * a folder, every answer carries the headers that make a page cross-origin
 * isolated (so tfjs takes its threaded wasm build), and every request is
 * recorded. A hub stand-in answers `/<owner>/<name>/resolve/<revision>/<file>`
 * from `hubFolder`: `model.safetensors` by a redirect to `http://localhost`
 * (another origin, as the hub's CDN is), which refuses a request that still
 * carries an Authorization header.
 */
export async function startPageServer(roots: Readonly<Record<string, string>>, options: { hubFolder?: string; hubToken?: string } = {}) {
  const requests: { path: string; authorization?: string }[] = [];
  const faults: { corrupt: Set<string>; stall: Map<string, number> } = { corrupt: new Set(), stall: new Map() };
  const stalled = new Set<ServerResponse>();
  let port = 0;

  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push({ path, authorization: req.headers.authorization });
    const headers: Record<string, string> = {
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'cross-origin',
      'access-control-allow-origin': '*',
      'access-control-allow-headers': 'authorization',
      'cache-control': 'no-store',
    };
    if (req.method === 'OPTIONS') return void res.writeHead(204, headers).end();
    if (options.hubFolder !== undefined) {
      const cdn = /^\/cdn\/(.+)$/.exec(path);
      if (cdn !== null) {
        if (req.headers.authorization !== undefined) return void res.writeHead(400, headers).end('Only one auth mechanism allowed');
        return sendFile(res, join(options.hubFolder, cdn[1]), path, headers);
      }
      const hub = /^\/[\w.-]+\/[\w.-]+\/resolve\/[\w.-]+\/(.+)$/.exec(path);
      if (hub !== null) {
        if (options.hubToken !== undefined && req.headers.authorization !== `Bearer ${options.hubToken}`) return void res.writeHead(401, headers).end();
        if (hub[1] === 'model.safetensors') return void res.writeHead(302, { ...headers, location: `http://localhost:${port}/cdn/${hub[1]}?X-Amz-Signature=abc` }).end();
        return sendFile(res, join(options.hubFolder, hub[1]), path, headers);
      }
    }
    const prefix = Object.keys(roots).sort((a, b) => b.length - a.length).find((p) => path.startsWith(p));
    if (prefix === undefined) return void res.writeHead(404, headers).end();
    const file = normalize(join(roots[prefix], path.slice(prefix.length)));
    if (!file.startsWith(normalize(roots[prefix]))) return void res.writeHead(403, headers).end();
    sendFile(res, file, path, headers);
  });

  function sendFile(res: ServerResponse, file: string, path: string, headers: Record<string, string>): void {
    let body: Buffer;
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      body = readFileSync(file);
    } catch {
      return void res.writeHead(404, headers).end();
    }
    if (faults.corrupt.has(path)) {
      body = Buffer.from(body);
      // Inside the JSON header of a safetensors file: it no longer parses.
      body[9] ^= 0x5a;
    }
    res.writeHead(200, { ...headers, 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': String(body.length) });
    const stall = faults.stall.get(path);
    if (stall !== undefined) {
      stalled.add(res);
      res.write(body.subarray(0, stall));
      res.on('close', () => stalled.delete(res));
      return;
    }
    res.end(body);
  }

  // Longer than any test: a client reusing a connection the server has just timed out gets ECONNRESET.
  server.keepAliveTimeout = 600_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    /** Requests whose path ends with `suffix`. */
    count: (suffix: string) => requests.filter((r) => r.path.endsWith(suffix)).length,
    /** Stalled answers whose connection is still open. */
    stalledAnswers: () => stalled.size,
    setFaults(next: PageFaults): void {
      faults.corrupt = new Set(next.corrupt ?? []);
      faults.stall = new Map(Object.entries(next.stall ?? {}));
    },
    close(): Promise<void> {
      for (const res of stalled) res.destroy();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
