import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubFault {
  /** Drop the connection after sending this many bytes of a GET of this file (once). */
  cutAfter?: Record<string, number>;
  /** Flip a byte of this file in every GET body. */
  corrupt?: string[];
  /** Ignore Range headers (answer 200 with the whole file). */
  ignoreRange?: boolean;
  /** Answer a range request with 206 and the whole file, labelled as starting at byte 0. */
  wrongRange?: boolean;
  /** Announce a wrong hash for these files (X-Linked-Etag for LFS files, ETag for the others). */
  lieAboutHash?: string[];
  /** Wait this many milliseconds before sending the bytes of this file (every GET). */
  delay?: Record<string, number>;
  /** Redirect LFS files to a relative CDN path (`/cdn/...`) instead of an absolute URL, as some mirrors do. */
  relativeCdn?: boolean;
  /** Announce no hash at all for these files (no X-Linked-Etag on the redirect, no ETag on a direct answer). */
  noHash?: string[];
  /** Require this bearer token at the hub. */
  token?: string;
}

/** The hub stores these in LFS: they are served through a redirect to the CDN. */
const LFS_FILES = new Set(['model.safetensors']);

const sha256 = (body: Buffer) => createHash('sha256').update(body).digest('hex');
const gitBlobSha1 = (body: Buffer) => createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');

/**
 * A stand-in for the Hugging Face hub on 127.0.0.1, behaving as the real one
 * does for `/<owner>/<name>/resolve/<revision>/<file>`:
 * - LFS files: a 302 redirect to an absolute CDN URL, with the size and SHA-256
 *   in `X-Linked-Size` and `X-Linked-Etag` on the redirect only; the CDN serves
 *   the bytes (ranges included) with an ETag of its own and refuses requests
 *   that carry an Authorization header, as a signed S3 URL does;
 * - other files: 200 with the git blob SHA-1 as ETag;
 * - `/old/<name>/...`: a relative 307 to `/new-owner/<name>/...`, as for a renamed repository.
 * It can fail on purpose, and records every request.
 */
export async function startHub(folder: string, files: string[], fault: HubFault = {}) {
  const requests: { method: string; path: string; range?: string; authorization?: string }[] = [];
  const bodies = new Map(files.map((name) => [name, readFileSync(join(folder, name))]));
  const bySha = new Map([...bodies].map(([name, body]) => [sha256(body), name]));
  let origin = '';

  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    requests.push({ method: req.method ?? '', path, range: req.headers.range, authorization: req.headers.authorization });
    const cdn = /^\/cdn\/([0-9a-f]{64})\?/.exec(path);
    if (cdn !== null) {
      if (req.headers.authorization !== undefined) return void res.writeHead(400).end('Only one auth mechanism allowed');
      const name = bySha.get(cdn[1]);
      if (name === undefined) return void res.writeHead(404).end();
      return serveBytes(req, res, name, { etag: `"${sha256(Buffer.from(name)).slice(0, 32)}-1"` });
    }
    const renamed = /^\/old\/([\w.-]+)\/(resolve\/.+)$/.exec(path);
    if (renamed !== null) return void res.writeHead(307, { location: `/new-owner/${renamed[1]}/${renamed[2]}` }).end();
    if (fault.token !== undefined && req.headers.authorization !== `Bearer ${fault.token}`) return void res.writeHead(401).end();
    const name = /^\/[\w.-]+\/[\w.-]+\/resolve\/[\w.-]+\/(.+)$/.exec(path)?.[1];
    const body = name === undefined ? undefined : bodies.get(name);
    if (name === undefined || body === undefined) return void res.writeHead(404).end();
    const lie = fault.lieAboutHash?.includes(name) ?? false;
    const announce = !(fault.noHash?.includes(name) ?? false);
    if (LFS_FILES.has(name)) {
      const hash = lie ? sha256(Buffer.from('something else')) : sha256(body);
      return void res
        .writeHead(302, {
          location: `${fault.relativeCdn ? '' : origin}/cdn/${sha256(body)}?X-Amz-Signature=abc`,
          'x-linked-size': String(body.length),
          ...(announce ? { 'x-linked-etag': `"${hash}"`, etag: `"${hash}"` } : {}),
          'x-repo-commit': '0'.repeat(40),
        })
        .end();
    }
    const etag = lie ? gitBlobSha1(Buffer.from('something else')) : gitBlobSha1(body);
    return serveBytes(req, res, name, { ...(announce ? { etag: `"${etag}"` } : {}), 'x-repo-commit': '0'.repeat(40) });
  });

  function serveBytes(req: IncomingMessage, res: ServerResponse, name: string, headers: Record<string, string>): void {
    const delay = req.method === 'GET' ? fault.delay?.[name] : undefined;
    if (delay !== undefined) return void setTimeout(() => sendBytes(req, res, name, headers), delay);
    sendBytes(req, res, name, headers);
  }

  function sendBytes(req: IncomingMessage, res: ServerResponse, name: string, headers: Record<string, string>): void {
    let body = bodies.get(name)!;
    if (req.method === 'HEAD') return void res.writeHead(200, { ...headers, 'content-length': body.length, 'accept-ranges': 'bytes' }).end();
    if (fault.corrupt?.includes(name)) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = range !== null && !fault.ignoreRange ? Number(range[1]) : 0;
    let status = start > 0 ? 206 : 200;
    if (range !== null && fault.wrongRange) {
      start = 0;
      status = 206;
    }
    const part = body.subarray(start);
    res.writeHead(status, {
      ...headers,
      'accept-ranges': 'bytes',
      'content-length': part.length,
      ...(status === 206 ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    const cut = fault.cutAfter?.[name];
    if (cut !== undefined) {
      delete fault.cutAfter![name];
      // Let the bytes before the cut arrive, then break the connection.
      res.write(part.subarray(0, cut), () => setImmediate(() => res.destroy()));
      return;
    }
    res.end(part);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;
  return {
    endpoint: origin,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
