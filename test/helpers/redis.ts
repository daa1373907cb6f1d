import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort } from './free-port.js';
import { describe } from 'vitest';

/**
 * `describe` where redis-server can run; elsewhere `describe.skip`, with a
 * message naming the script that installs it. Under CI=true a missing
 * redis-server fails instead.
 */
export function redisSuite(): typeof describe {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.status === 0) return describe;
  const message = `no redis-server (${probe.error?.message ?? probe.stderr.trim()}); run scripts/setup-redis.sh`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`skipping the queue tests: ${message}`);
  return describe.skip as unknown as typeof describe;
}

/**
 * A real redis-server on a loopback port, without persistence, for one test
 * file (scripts/setup-redis.sh installs it). `restart()` stops it and starts
 * it again on the same port, as a server restart would, after `downMs`.
 */
export async function startRedis(
  port?: number,
  /** A folder to keep the data in (append-only file), so that it survives a restart. */
  dataDir?: string,
): Promise<{ url: string; port: number; stop(): Promise<void>; restart(downMs?: number): Promise<void> }> {
  const chosen = port ?? (await freePort());
  const persistence = dataDir === undefined ? ['--save', '', '--appendonly', 'no'] : ['--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir];
  let child: ChildProcess;
  const launch = () =>
    new Promise<void>((resolve, reject) => {
      child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', ...persistence], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`cannot run redis-server (${error.message}); run scripts/setup-redis.sh`));
      });
      child.stdout!.on('data', (d) => {
        output += d;
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  await launch();
  const restart = async (downMs = 0) => {
    await stop();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    await launch();
  };
  return { url: `redis://127.0.0.1:${chosen}`, port: chosen, stop, restart };
}
