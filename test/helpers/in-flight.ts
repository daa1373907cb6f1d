import type { BatchRunner } from '../../src/pool/runner.js';

/** Counts a runner's batches in flight while `work` runs, and returns the most there were at once. */
export async function mostInFlight(runner: BatchRunner, work: () => Promise<unknown>): Promise<number> {
  const writable = runner as { run: BatchRunner['run'] };
  const run = writable.run;
  let running = 0;
  let most = 0;
  writable.run = async (job) => {
    most = Math.max(most, ++running);
    try {
      return await run.call(runner, job);
    } finally {
      running--;
    }
  };
  try {
    await work();
    return most;
  } finally {
    writable.run = run;
  }
}
