/**
 * Fault injection inside real worker threads (see WorkerSetup.hooks). The
 * behaviour is read from a JSON control file, named in the fragment of this module's URL (tsx takes the query for itself), at
 * every start and every batch, so a test can change it while the pool runs.
 * Workers announce what they do on a BroadcastChannel, so tests wait on
 * events, never on fixed sleeps.
 */
import { existsSync, readFileSync } from 'node:fs';
import { BroadcastChannel, threadId } from 'node:worker_threads';
import { ModelFilesError } from '../../src/errors.js';
import type { runBatchJob } from '../../src/pipeline/batch-job.js';

export const HOOK_CHANNEL = 'nomic-embed-test-hooks';

export interface HookControl {
  /** Fail the start with a typed error. */
  failStart?: boolean;
  /** Batches of more texts than this fail as the wasm heap does when it cannot grow. */
  oomAbove?: number;
  /** Batches never finish (until the thread is ended). */
  hold?: boolean;
}

export type HookEvent = { type: 'started' | 'running' | 'oom'; threadId: number };

const control = new URLSearchParams(new URL(import.meta.url).hash.slice(1)).get('control');
const channel = new BroadcastChannel(HOOK_CHANNEL);
channel.unref();

function read(): HookControl {
  return control !== null && existsSync(control) ? (JSON.parse(readFileSync(control, 'utf8')) as HookControl) : {};
}

function announce(type: HookEvent['type']): void {
  channel.postMessage({ type, threadId } satisfies HookEvent);
}

export function onStart(): void {
  if (read().failStart) throw new ModelFilesError('/injected/model.safetensors', 'injected start failure');
  announce('started');
}

export function wrapRun(run: typeof runBatchJob): typeof runBatchJob {
  return async (model, job) => {
    const now = read();
    if (now.hold) {
      announce('running');
      return new Promise(() => {});
    }
    if (now.oomAbove !== undefined && job.sequences.length > now.oomAbove) {
      announce('oom');
      throw new Error('Aborted(Cannot enlarge memory arrays to size 4294967296 bytes (OOM))');
    }
    return run(model, job);
  };
}
