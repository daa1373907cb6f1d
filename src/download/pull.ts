import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DownloadError } from '../errors.js';
import { describeRemote, type RemoteFile } from './remote.js';

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
  /** The folder itself, instead of `<weightsDir>/<name>`. */
  readonly into?: string;
  /** @default process.env.HF_ENDPOINT ?? 'https://huggingface.co' */
  readonly endpoint?: string;
  /** @default process.env.HF_TOKEN */
  readonly token?: string;
  /** @default 'main' */
  readonly revision?: string;
  readonly onProgress?: (file: string, done: number, total: number | undefined) => void;
  readonly onFileDone?: (file: string, status: 'downloaded' | 'present' | 'absent') => void;
  /** A file accepted without a hash to check it against. @default process.emitWarning */
  readonly onWarning?: (message: string) => void;
}

/**
 * Downloads a model folder from the Hugging Face hub, as `huggingface_hub`
 * does: the metadata (size, and hash: SHA-256 for LFS files, the git blob
 * SHA-1 for the others) is read from the hub's answer without following its
 * redirect to the CDN, then the bytes come from where the redirect points.
 * Each file is written to `<file>.partial` and renamed only once its size and
 * hash match, so an interrupted pull resumes with a range request, and a
 * corrupt or partial file never takes the real name. Returns the folder.
 */
export async function pull(options: PullOptions = {}): Promise<string> {
  const repo = options.repo ?? DEFAULT_REPO;
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new DownloadError(repo, 'the repository must look like owner/name');
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token = options.token ?? process.env.HF_TOKEN;
  const revision = options.revision ?? 'main';
  const dir = options.into ?? join(options.weightsDir ?? 'weights', repo.split('/')[1]);
  mkdirSync(dir, { recursive: true });
  for (const { name, required } of MODEL_FILES) {
    const url = `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${name}`;
    const target = join(dir, name);
    const remote = await describeRemote(url, token);
    if (remote === undefined) {
      if (required) throw new DownloadError(url, 'not found on the hub (HTTP 404); check the repository name and HF_TOKEN');
      options.onFileDone?.(name, 'absent');
      continue;
    }
    if (existsSync(target) && (await matches(target, remote))) {
      options.onFileDone?.(name, 'present');
      continue;
    }
    await download(url, remote, target, (done, total) => options.onProgress?.(name, done, total));
    if (remote.hash === undefined) {
      const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'UnverifiedDownload'));
      warn(`${name}: ${url} announced no hash, so the download could not be verified (only its size${remote.size === undefined ? ', and not even that,' : ''} was checked)`);
    }
    options.onFileDone?.(name, 'downloaded');
  }
  return dir;
}

async function download(
  url: string,
  remote: RemoteFile,
  target: string,
  onProgress: (done: number, total: number | undefined) => void,
): Promise<void> {
  const partial = `${target}.partial`;
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (remote.size !== undefined && have > remote.size) {
    rmSync(partial);
    have = 0;
  }
  if (remote.size === undefined || have < remote.size) await fetchInto(url, remote, partial, have, onProgress);
  const size = statSync(partial).size;
  if (remote.size !== undefined && size !== remote.size) {
    throw new DownloadError(url, `got ${size} of ${remote.size} bytes; run the same command again to resume`);
  }
  // The size is checked above; without an announced hash there is nothing more to check (pull warns).
  if (remote.hash !== undefined && !(await matches(partial, remote))) {
    rmSync(partial);
    throw new DownloadError(
      url,
      `the downloaded file does not match the ${remote.hash?.algorithm === 'git-sha1' ? 'git blob SHA-1' : 'SHA-256'} ` +
        'the hub announced; it was deleted, run again',
    );
  }
  renameSync(partial, target);
}

/** Appends the bytes from `have` on to `partial`, or rewrites it when the server does not resume where asked. */
async function fetchInto(
  url: string,
  remote: RemoteFile,
  partial: string,
  have: number,
  onProgress: (done: number, total: number | undefined) => void,
): Promise<void> {
  const response = await remote.fetchBytes(have);
  let start = have;
  if (have > 0 && !resumesAt(response, have, remote.size)) {
    // A server that ignores the range, or answers another one, sends what it sends from byte 0: start over.
    if (response.status === 206) {
      await response.body?.cancel();
      rmSync(partial);
      return fetchInto(url, remote, partial, 0, onProgress);
    }
    start = 0;
  }
  let done = start;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      done += chunk.length;
      onProgress(done, remote.size);
      callback(null, chunk);
    },
  });
  const out = createWriteStream(partial, { flags: start > 0 ? 'a' : 'w' });
  try {
    if (response.body !== null) await pipeline(Readable.fromWeb(response.body as never), count, out);
    else out.end();
  } catch (cause) {
    // The pipeline rejects at the first error, while writes already queued may still land:
    // wait until the file is closed, so its size is final when this error is seen.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    const error = cause as NodeJS.ErrnoException;
    if (error.syscall === 'write' || error.syscall === 'open' || error.code === 'ENOSPC') {
      throw new DownloadError(
        url,
        `cannot write ${partial} (${error.code ?? error.message}); free some space or fix the folder's permissions, ` +
          'then run the same command again to resume',
      );
    }
    throw new DownloadError(url, `interrupted after ${done} bytes (${error.message}); run the same command again to resume`);
  }
}

/** Whether a response to `Range: bytes=have-` really holds the bytes from `have` on of the announced file. */
function resumesAt(response: Response, have: number, size: number | undefined): boolean {
  if (response.status !== 206) return false;
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
  if (range === null || Number(range[1]) !== have) return false;
  return size === undefined || range[3] === '*' || Number(range[3]) === size;
}

/** Whether a local file has the announced size and hash. */
async function matches(path: string, remote: RemoteFile): Promise<boolean> {
  const size = statSync(path).size;
  if (remote.size !== undefined && size !== remote.size) return false;
  if (remote.hash === undefined) return remote.size !== undefined;
  return (await fileHash(path, remote.hash.algorithm, size)) === remote.hash.hex;
}

/** SHA-256 of the content, or git's blob id: SHA-1 of `blob <size>\0` and the content. */
export async function fileHash(path: string, algorithm: 'sha256' | 'git-sha1', size = statSync(path).size): Promise<string> {
  const hash = createHash(algorithm === 'sha256' ? 'sha256' : 'sha1');
  if (algorithm === 'git-sha1') hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
