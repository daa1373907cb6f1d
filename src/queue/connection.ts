import type { Redis } from 'ioredis';
import { NomicEmbedError } from '../errors.js';

export class RedisUnreachableError extends NomicEmbedError {
  override name = 'RedisUnreachableError';
  constructor(
    /** The URL with its password masked. */
    readonly url: string,
    reason: string,
  ) {
    super(`cannot reach Redis at ${url} (${reason}); check --redis and that the server runs`);
  }
}

/**
 * Redis answered a command of `submit` with an error: most often a full Redis
 * (`maxmemory` with `noeviction`, as a queue should run). What was written
 * stays, and the same command resumes once Redis has room.
 */
export class RedisRefusedError extends NomicEmbedError {
  override name = 'RedisRefusedError';
  constructor(
    /** The URL with its password masked. */
    readonly url: string,
    /** What Redis was asked to hold, e.g. "lines 1-256 of corpus.txt". */
    readonly what: string,
    reason: string,
  ) {
    const hint = /^OOM\b/.test(reason)
      ? 'Redis is out of memory: give it more (maxmemory), or queue fewer chunks at once (--window, --chunk-texts); then run the same command again to go on'
      : 'run the same command again to go on from what was written';
    super(`Redis at ${url} refused to queue ${what}: ${redisReason(reason)}; ${hint}`);
  }
}

/** Redis's error message as an operator reads it: where in BullMQ's Lua script it happened says nothing to them. */
export function redisReason(message: string): string {
  return message.replace(/\.? script: [0-9a-f]+, on @user_script:\d+\.?$/, '');
}

/** The URL as it may be printed: a password becomes `***`. */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
  }
}

/**
 * A Redis connection for BullMQ, checked before use: an unreachable server is
 * a clear error naming it, not an endless retry. Once connected, ioredis
 * reconnects by itself when the server restarts, and BullMQ carries on.
 */
export async function connectRedis(url: string, timeoutMs = 5000): Promise<Redis> {
  // Loaded on first use, not where the package is imported (see `serve`).
  const { Redis: RedisClient } = await import('ioredis');
  const redis = new RedisClient(url, {
    // BullMQ's blocking commands must wait across reconnections rather than fail.
    maxRetriesPerRequest: null,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  // Before the first connection, errors are reported by connect(); after it, ioredis reconnects.
  redis.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect().then(() => redis.ping()),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs))),
    ]);
    return redis;
  } catch (error) {
    redis.disconnect();
    throw new RedisUnreachableError(maskUrl(url), (error as Error).message);
  } finally {
    clearTimeout(timer);
  }
}
