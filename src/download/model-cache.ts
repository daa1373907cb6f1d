import { existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { ModelFilesError } from '../errors.js';
import { pull, type PullOptions } from './pull.js';

/** How a hub repository id is written: `owner/name`, as the hub allows them. */
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Written last into a cached model folder: without it the folder is an unfinished download. */
export const COMPLETE_MARKER = '.nomic-embed-complete';

/** A download lock not touched for this long belongs to a process that is gone (on another machine, say). */
const STALE_LOCK_MS = 60_000;
const LOCK_HEARTBEAT_MS = 5_000;
const LOCK_POLL_MS = 250;

export interface ModelCacheOptions extends Pick<PullOptions, 'endpoint' | 'token' | 'onProgress' | 'onFileDone' | 'onWarning'> {
  /** @default 'main' */
  readonly revision?: string;
  /** Never download: a model not in the cache is an error. @default process.env.HF_HUB_OFFLINE is set */
  readonly offline?: boolean;
  /** @default process.env.NOMIC_EMBED_CACHE ?? ~/.cache/nomic-embed */
  readonly cacheDir?: string;
  /** Called (once) when another process is downloading the same model and this one waits for it. */
  readonly onWait?: () => void;
}

/**
 * Whether `source` names a hub repository rather than a folder: it reads as
 * `owner/name` and no file or folder of that path exists. A path that exists
 * is always a folder, and is never downloaded into.
 */
export function isHubId(source: string): boolean {
  return HUB_ID.test(source) && !existsSync(source);
}

export function defaultCacheDir(): string {
  return process.env.NOMIC_EMBED_CACHE || join(homedir(), '.cache', 'nomic-embed');
}

/** `HF_HUB_OFFLINE` as huggingface_hub reads it. */
export function offlineByEnvironment(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase());
}

/** One folder per repository and revision: `<cache>/<owner>--<name>/<revision>`. */
export function cachedModelDir(repo: string, revision = 'main', cacheDir = defaultCacheDir()): string {
  return join(cacheDir, repo.replace('/', '--'), encodeURIComponent(revision));
}

/**
 * The folder of a hub model in the cache, downloaded (verified and
 * resumable, by {@link pull}) on first use; later uses make no request.
 * Processes that start at once take turns through a lock file, and the
 * folder counts as cached only once every file is in place.
 */
export async function cachedModel(repo: string, options: ModelCacheOptions = {}): Promise<string> {
  const revision = options.revision ?? 'main';
  const dir = cachedModelDir(repo, revision, options.cacheDir);
  if (isComplete(dir)) return dir;
  if (options.offline ?? offlineByEnvironment()) {
    throw new ModelFilesError(
      dir,
      `${repo} (revision ${revision}) is not in the cache, and offline mode (HF_HUB_OFFLINE or --offline) forbids downloading it; ` +
        'run once online, or give a model folder',
    );
  }
  return withLock(`${dir}.lock`, options.onWait, async () => {
    // Another process may have finished it while this one waited.
    if (isComplete(dir)) return dir;
    await pull({ repo, revision, into: dir, endpoint: options.endpoint, token: options.token, onProgress: options.onProgress, onFileDone: options.onFileDone, onWarning: options.onWarning });
    writeFileSync(join(dir, COMPLETE_MARKER), `${JSON.stringify({ repo, revision, downloaded: new Date().toISOString() })}\n`);
    return dir;
  });
}

function isComplete(dir: string): boolean {
  return existsSync(join(dir, COMPLETE_MARKER));
}

/**
 * Runs `body` holding a lock file (created exclusively, holding the owner's
 * host and pid, touched while held). A lock whose owner on this host has
 * died, or that nobody touched for a minute, is taken over.
 */
async function withLock<T>(path: string, onWait: (() => void) | undefined, body: () => Promise<T>): Promise<T> {
  let waited = false;
  for (;;) {
    try {
      writeFileSync(path, JSON.stringify({ host: hostname(), pid: process.pid }), { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        // The cache folder does not exist yet; pull creates the model's own folder.
        ensureParent(path);
        continue;
      }
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (isStale(path)) {
      rmSync(path, { force: true });
      continue;
    }
    if (!waited) onWait?.();
    waited = true;
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    try {
      utimesSync(path, now, now);
    } catch {
      // Taken over as stale after all: the pull's own checks still hold.
    }
  }, LOCK_HEARTBEAT_MS);
  heartbeat.unref();
  try {
    return await body();
  } finally {
    clearInterval(heartbeat);
    rmSync(path, { force: true });
  }
}

function isStale(path: string): boolean {
  let owner: { host?: string; pid?: number };
  let touched: number;
  try {
    touched = statSync(path).mtimeMs;
    owner = JSON.parse(readFileSync(path, 'utf8') || '{}') as typeof owner;
  } catch {
    // Gone already (the next try takes it), or being written this instant (leave it).
    return false;
  }
  if (Date.now() - touched > STALE_LOCK_MS) return true;
  return owner.host === hostname() && typeof owner.pid === 'number' && !processAlive(owner.pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ensureParent(path: string): void {
  const parent = join(path, '..');
  if (!existsSync(parent)) mkdirSync(parent, { recursive: true });
}
