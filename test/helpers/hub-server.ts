import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubFault {
  /** Drop the connection after sending this many bytes of a GET of this file. */
  cutAfter?: Record<string, number>;
  /** Flip a byte of this file in every GET body. */
  corrupt?: string[];
  /** Ignore Range headers (answer 200 with the whole file). */
  ignoreRange?: boolean;
  /** Require this bearer token. */
  token?: string;
}

/**
 * A stand-in for the Hugging Face hub on 127.0.0.1: serves a folder's files at
 * /<owner>/<name>/resolve/<revision>/<file>, announces size and SHA-256 the way
 * the hub does for LFS files (X-Linked-Size, X-Linked-Etag), honours Range,
 * and can fail on purpose. Records every request.
 */
export async function startHub(folder: string, files: string[], fault: HubFault = {}) {
  const requests: { method: string; path: string; range?: string }[] = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    requests.push({ method: req.method ?? '', path, range: req.headers.range });
    if (fault.token !== undefined && req.headers.authorization !== `Bearer ${fault.token}`) {
      res.writeHead(401).end();
      return;
    }
    const name = /^\/[\w.-]+\/[\w.-]+\/resolve\/[\w.-]+\/(.+)$/.exec(path)?.[1];
    if (name === undefined || !files.includes(name)) {
      res.writeHead(404).end();
      return;
    }
    let body = readFileSync(join(folder, name));
    const headers = {
      'x-linked-size': String(body.length),
      'x-linked-etag': `"${createHash('sha256').update(body).digest('hex')}"`,
      'accept-ranges': 'bytes',
    };
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...headers, 'content-length': body.length }).end();
      return;
    }
    if (fault.corrupt?.includes(name)) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range !== null && !fault.ignoreRange) start = Number(range[1]);
    const part = body.subarray(start);
    res.writeHead(start > 0 ? 206 : 200, {
      ...headers,
      'content-length': part.length,
      ...(start > 0 ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    const cut = fault.cutAfter?.[name];
    if (cut !== undefined) {
      delete fault.cutAfter![name];
      res.write(part.subarray(0, cut), () => res.destroy());
      return;
    }
    res.end(part);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
