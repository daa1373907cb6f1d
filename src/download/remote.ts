import { DownloadError } from '../errors.js';

export interface RemoteFile {
  readonly size: number | undefined;
  /** The content hash the hub announces: SHA-256 for LFS files, the git blob SHA-1 for the others. */
  readonly hash: { readonly algorithm: 'sha256' | 'git-sha1'; readonly hex: string } | undefined;
  /** GETs the file's bytes from `from` on (a range request when above 0). */
  fetchBytes(from: number): Promise<Response>;
}

/** Relative redirects (a renamed repository) followed while reading metadata. */
const MAX_RELATIVE_REDIRECTS = 5;

/**
 * Reads a file's metadata from the hub without following its redirect to the
 * CDN: for LFS files the hub answers with a redirect whose `X-Linked-Size` and
 * `X-Linked-Etag` give the size and SHA-256, and `fetch` would drop them
 * when following it. Relative redirects (renamed repositories) are followed.
 * The token goes to the hub only, never to the CDN, whose URL is signed.
 * Resolves to undefined when the file does not exist.
 */
export async function describeRemote(url: string, token: string | undefined): Promise<RemoteFile | undefined> {
  const hubHeaders: Record<string, string> = { 'accept-encoding': 'identity', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  let target = url;
  for (let hop = 0; hop <= MAX_RELATIVE_REDIRECTS; hop++) {
    const response = await request(target, { method: 'HEAD', headers: hubHeaders, redirect: 'manual' });
    if (response.status === 404) return undefined;
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400) {
      if (location === null) throw new DownloadError(target, `HTTP ${response.status} without a Location header`);
      const next = new URL(location, target).href;
      if (!/^[a-z][a-z0-9+.-]*:/i.test(location)) {
        target = next;
        continue;
      }
      // Off to the CDN: the metadata is on this answer, and the bytes there.
      return {
        ...metadata(response),
        fetchBytes: (from) => request(next, { headers: rangeHeaders({ 'accept-encoding': 'identity' }, from) }),
      };
    }
    if (!response.ok) throw new DownloadError(target, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`);
    const direct = target;
    return { ...metadata(response), fetchBytes: (from) => request(direct, { headers: rangeHeaders(hubHeaders, from) }) };
  }
  throw new DownloadError(url, `more than ${MAX_RELATIVE_REDIRECTS} redirects`);
}

function metadata(response: Response): Pick<RemoteFile, 'size' | 'hash'> {
  const size = Number(response.headers.get('x-linked-size') ?? response.headers.get('content-length') ?? NaN);
  const etag = (response.headers.get('x-linked-etag') ?? response.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
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
    throw new DownloadError(url, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`);
  }
  return response;
}

function authHint(status: number): string {
  return status === 401 || status === 403 ? '; set HF_TOKEN to a token with access to this repository' : '';
}
