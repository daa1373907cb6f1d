import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { DownloadError } from '../errors.js';

export { DownloadError };

export const DEFAULT_REPO = 'nomic-ai/nomic-embed-text-v1.5';
export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** What `pull` fetches; tokenizer_config.json is optional (some repositories lack it). */
export const MODEL_FILES: readonly { name: string; required: boolean }[] = [
  { name: 'config.json', required: true },
  { name: 'tokenizer.json', required: true },
  { name: 'tokenizer_config.json', required: false },
  { name: 'model.safetensors', required: true },
];

export interface PullOptions {
  /** `owner/name` on the hub. @default 'nomic-ai/nomic-embed-text-v1.5' */
  readonly repo?: string;
  /** Where the folder `<name>` is created. @default 'weights' */
  readonly weightsDir?: string;
  /** @default process.env.HF_ENDPOINT ?? 'https://huggingface.co' */
  readonly endpoint?: string;
  /** @default process.env.HF_TOKEN */
  readonly token?: string;
  /** @default 'main' */
  readonly revision?: string;
  readonly onProgress?: (file: string, done: number, total: number | undefined) => void;
  readonly onFileDone?: (file: string, status: 'downloaded' | 'present' | 'absent') => void;
}

interface RemoteFile {
  readonly size?: number;
  /** SHA-256 of the content, where the hub gives one (LFS files: `X-Linked-Etag`). */
  readonly sha256?: string;
}

/**
 * Downloads a model folder from the Hugging Face hub. Each file is written to
 * `<file>.partial` and renamed once complete and verified (size, and SHA-256
 * where the hub announces one), so an interrupted pull resumes where it
 * stopped with an HTTP range request, and a corrupt file never takes the real
 * name. Returns the folder.
 */
export async function pull(options: PullOptions = {}): Promise<string> {
  const repo = options.repo ?? DEFAULT_REPO;
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new DownloadError(repo, 'the repository must look like owner/name');
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token = options.token ?? process.env.HF_TOKEN;
  const revision = options.revision ?? 'main';
  const dir = join(options.weightsDir ?? 'weights', repo.split('/')[1]);
  mkdirSync(dir, { recursive: true });
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  for (const { name, required } of MODEL_FILES) {
    const url = `${endpoint}/${repo}/resolve/${revision}/${name}`;
    const target = join(dir, name);
    const remote = await describeRemote(url, headers);
    if (remote === undefined) {
      if (required) throw new DownloadError(url, 'not found on the hub (HTTP 404); check the repository name and HF_TOKEN');
      options.onFileDone?.(name, 'absent');
      continue;
    }
    if (existsSync(target) && (await matches(target, remote))) {
      options.onFileDone?.(name, 'present');
      continue;
    }
    await download(url, headers, target, remote, (done, total) => options.onProgress?.(name, done, total));
    options.onFileDone?.(name, 'downloaded');
  }
  return dir;
}

async function describeRemote(url: string, headers: Record<string, string>): Promise<RemoteFile | undefined> {
  const response = await request(url, { method: 'HEAD', headers });
  if (response.status === 404) return undefined;
  if (!response.ok) throw new DownloadError(url, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`);
  const size = Number(response.headers.get('x-linked-size') ?? response.headers.get('content-length') ?? NaN);
  const etag = (response.headers.get('x-linked-etag') ?? response.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
  return {
    size: Number.isFinite(size) ? size : undefined,
    // Git blob ids (40 hex) are not content hashes; LFS ids are SHA-256 (64 hex).
    sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : undefined,
  };
}

async function download(
  url: string,
  headers: Record<string, string>,
  target: string,
  remote: RemoteFile,
  onProgress: (done: number, total: number | undefined) => void,
): Promise<void> {
  const partial = `${target}.partial`;
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (remote.size !== undefined && have > remote.size) {
    rmSync(partial);
    have = 0;
  }
  const range: Record<string, string> = have > 0 && (remote.size === undefined || have < remote.size) ? { range: `bytes=${have}-` } : {};
  let response: Response;
  if (remote.size !== undefined && have === remote.size) {
    response = new Response(null, { status: 206 });
  } else {
    response = await request(url, { headers: { ...headers, ...range } });
    if (!response.ok) throw new DownloadError(url, `HTTP ${response.status} ${response.statusText}${authHint(response.status)}`);
    // A server that ignores the range sends the whole file again: start over.
    if (response.status !== 206) have = 0;
  }
  const out = createWriteStream(partial, { flags: have > 0 ? 'a' : 'w' });
  let done = have;
  try {
    if (response.body !== null) {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
        done += chunk.length;
        onProgress(done, remote.size);
      }
    }
  } catch (cause) {
    throw new DownloadError(url, `interrupted after ${done} bytes (${(cause as Error).message}); run the same command again to resume`);
  } finally {
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
  if (remote.size !== undefined && done !== remote.size) {
    throw new DownloadError(url, `got ${done} of ${remote.size} bytes; run the same command again to resume`);
  }
  if (!(await matches(partial, remote))) {
    rmSync(partial);
    throw new DownloadError(url, 'the downloaded file does not match the SHA-256 the hub announced; it was deleted, run again');
  }
  renameSync(partial, target);
}

/** Whether a local file has the announced size and hash. */
async function matches(path: string, remote: RemoteFile): Promise<boolean> {
  if (remote.size !== undefined && statSync(path).size !== remote.size) return false;
  if (remote.sha256 === undefined) return remote.size !== undefined;
  return (await sha256(path)) === remote.sha256;
}

export async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function request(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (cause) {
    const reason = (cause as Error & { cause?: Error }).cause?.message ?? (cause as Error).message;
    throw new DownloadError(url, `cannot connect (${reason}); check the network or HF_ENDPOINT`);
  }
}

function authHint(status: number): string {
  return status === 401 || status === 403 ? '; set HF_TOKEN to a token with access to this repository' : '';
}
