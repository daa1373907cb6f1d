import { DownloadError } from '../errors.js';

export interface RemoteFile {
  readonly size: number | undefined;
  /** The content hash the hub announces: SHA-256 for LFS files, the git blob SHA-1 for the others. */
  readonly hash: { readonly algorithm: 'sha256' | 'git-sha1'; readonly hex: string } | undefined;
  /** GETs the file's bytes from `from` on (a range request when above 0). */
  fetchBytes(from: number): Promise<Response>;
}

/** Redirects followed while reading metadata (renamed repositories, then the way to the stored bytes). */
const MAX_REDIRECTS = 5;

/**
 * Reads a file's metadata from the hub without letting `fetch` follow its
 * redirects: for LFS files the hub answers with a redirect whose
 * `X-Linked-Size` and `X-Linked-Etag` give the size and SHA-256, and `fetch`
 * would drop them on the way. The size and hash announced by any answer in
 * the chain, relative redirect or absolute, are kept; once an answer has
 * announced both, the bytes are fetched from where it points without asking
 * further. The token goes only to the hub's own `/resolve/` URLs, never to
 * where the bytes are stored (a signed URL, which refuses a second
 * credential). Resolves to undefined when the file does not exist.
 */
export async function describeRemote(url: string, token: string | undefined): Promise<RemoteFile | undefined> {
  const plain = { 'accept-encoding': 'identity' };
  const withToken: Record<string, string> = { ...plain, ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const headersFor = (target: string) => (isHubResolveUrl(target, url) ? withToken : plain);
  let announced: Pick<RemoteFile, 'size' | 'hash'> = { size: undefined, hash: undefined };
  let target = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const response = await request(target, { method: 'HEAD', headers: headersFor(target), redirect: 'manual' });
    if (response.status === 404) return undefined;
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      if (location === null) throw new DownloadError(target, `HTTP ${response.status} without a Location header`);
      const own = metadata(response, 'linked');
      announced = { size: announced.size ?? own.size, hash: announced.hash ?? own.hash };
      target = new URL(location, target).href;
      if (announced.size !== undefined && announced.hash !== undefined) return { ...announced, fetchBytes: bytesFrom(target, headersFor(target)) };
      continue;
    }
    if (!response.ok) throw new DownloadError(target, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`);
    const own = metadata(response);
    return { size: announced.size ?? own.size, hash: announced.hash ?? own.hash, fetchBytes: bytesFrom(target, headersFor(target)) };
  }
  throw new DownloadError(url, `more than ${MAX_REDIRECTS} redirects`);
}

function bytesFrom(url: string, headers: Record<string, string>): RemoteFile['fetchBytes'] {
  return (from) => request(url, { headers: rangeHeaders(headers, from) });
}

/** A file URL of the hub itself (`<endpoint>/<repo>/resolve/...`), on the origin first asked. */
function isHubResolveUrl(target: string, first: string): boolean {
  const url = new URL(target);
  return url.origin === new URL(first).origin && /^\/[^/]+\/[^/]+\/resolve\//.test(url.pathname);
}

/**
 * The size and hash an answer announces. A redirect announces them only in
 * `X-Linked-Size` / `X-Linked-Etag` (its own length and tag describe the
 * redirect); a file's answer also in `Content-Length` / `ETag`.
 */
function metadata(response: Response, which: 'linked' | 'any' = 'any'): Pick<RemoteFile, 'size' | 'hash'> {
  const header = (linked: string, own: string) => response.headers.get(linked) ?? (which === 'any' ? response.headers.get(own) : null);
  const size = Number(header('x-linked-size', 'content-length') ?? NaN);
  const etag = (header('x-linked-etag', 'etag') ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  return {
    size: Number.isSafeInteger(size) && size >= 0 ? size : undefined,
    hash: /^[0-9a-f]{64}$/.test(etag)
      ? { algorithm: 'sha256', hex: etag }
      : /^[0-9a-f]{40}$/.test(etag)
        ? { algorithm: 'git-sha1', hex: etag }
        : undefined,
  };
}

function rangeHeaders(headers: Record<string, string>, from: number): Record<string, string> {
  return from > 0 ? { ...headers, range: `bytes=${from}-` } : headers;
}

export async function request(url: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    const reason = (cause as Error & { cause?: Error }).cause?.message ?? (cause as Error).message;
    throw new DownloadError(url, `cannot connect (${reason}); check the network or HF_ENDPOINT`);
  }
  if (init.method !== 'HEAD' && !response.ok) {
    await response.body?.cancel();
    throw new DownloadError(url, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`, response.status);
  }
  return response;
}

function authHint(status: number): string {
  return status === 401 || status === 403 ? '; set HF_TOKEN to a token with access to this repository' : '';
}
