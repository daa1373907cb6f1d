import { existsSync } from 'node:fs';
import { cachedModel, isHubId } from '../download/model-cache.js';
import { DEFAULT_REPO, type PullOptions } from '../download/pull.js';
import { UsageError } from './args.js';
import type { CliIo } from './main.js';
import { formatBytes, ProgressBar } from './progress.js';

/** Used when a command is given no --model: downloaded into the cache on first use. */
export const DEFAULT_MODEL = DEFAULT_REPO;

/**
 * The model folder for `--model`: a folder as given, or a hub repository id
 * (by default {@link DEFAULT_MODEL}) from the cache, downloaded there first
 * if it is not yet, with progress on stderr.
 */
export async function modelFolder(values: { model?: string; revision?: string; offline?: boolean; quiet?: boolean }, io: CliIo): Promise<string> {
  const source = values.model ?? DEFAULT_MODEL;
  if (existsSync(source)) {
    if (values.revision !== undefined) throw new UsageError(`--revision applies to a hub repository id; ${source} is a folder`);
    return source;
  }
  if (!isHubId(source)) throw new UsageError(`--model ${source}: no such folder, and not a hub repository id (owner/name)`);
  return cachedModel(source, {
    revision: values.revision,
    offline: values.offline === true ? true : undefined,
    onWait: () => values.quiet || io.stderr.write(`${source}: another process is downloading it; waiting\n`),
    ...downloadReporter(io, values.quiet === true),
  });
}

/** Progress of a download for a person: a bar per file on a terminal, a line per file elsewhere; nothing when quiet. */
export function downloadReporter(io: CliIo, quiet: boolean): Pick<PullOptions, 'onProgress' | 'onFileDone' | 'onWarning'> {
  const showBar = !quiet && io.stderr.isTTY === true;
  let bar: { file: string; progress: ProgressBar; done: number } | undefined;
  return {
    onProgress: (file, done, total) => {
      if (!showBar) return;
      if (bar?.file !== file) bar = { file, progress: new ProgressBar(io.stderr, file, 'B', formatBytes), done: 0 };
      bar.done = done;
      bar.progress.update(done, total);
    },
    onFileDone: (file, status) => {
      if (bar?.file === file) bar.progress.finish(bar.done, bar.done);
      bar = undefined;
      const what = { present: 'already complete', absent: 'not in the repository (optional)', downloaded: 'downloaded and verified' }[status];
      if (!quiet) io.stderr.write(`${file}: ${what}\n`);
    },
    // Even when quiet: an unverified file is something to know.
    onWarning: (message) => io.stderr.write(`warning: ${message}\n`),
  };
}
