import type { Job, Queue, QueueEvents } from 'bullmq';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dtypeOf, finishNpyFile, npyBody, npyHeader, type NpyDtype } from '../formats/npy.js';
import { isJsonLines, textOfLine } from '../formats/text-lines.js';
import { connectRedis, maskUrl, RedisRefusedError } from './connection.js';
import { JOB_FORMAT_VERSION, decodeResult, type ChunkJob, type ChunkOptions, type ChunkResult } from './job-format.js';
import { DEFAULT_QUEUE } from './queue-worker.js';

export interface SubmitOptions {
  readonly redis: string;
  /** @default 'nomic-embed' */
  readonly queue?: string;
  /** One text per line, or JSON Lines with a "text" field (.jsonl, .ndjson). */
  readonly input: string;
  /** JSON Lines (`{"index", "embedding"}` per text) or, ending in .npy, one [N, D] matrix. */
  readonly output: string;
  readonly options?: ChunkOptions;
  /** Texts per job. @default 256 */
  readonly chunkTexts?: number;
  /** Jobs on the queue at once beyond the next one to write, which bounds Redis memory. @default 64 */
  readonly window?: number;
  /** Tries per job before it counts as failed. @default 3 */
  readonly attempts?: number;
  readonly onProgress?: (progress: SubmitProgress) => void;
}

export interface SubmitProgress {
  readonly chunksDone: number;
  readonly chunks: number;
  readonly textsDone: number;
  readonly texts: number;
  /** Texts per second in this run. */
  readonly rate: number;
}

export interface FailedChunk {
  /** Input lines, from 1, of the chunk's texts. */
  readonly firstLine: number;
  readonly lastLine: number;
  readonly reason: string;
}

export interface SubmitSummary {
  readonly texts: number;
  readonly chunks: number;
  /** Chunks a previous, interrupted run had already written. */
  readonly resumedChunks: number;
  /** Chunks that kept failing: their texts are left out of JSON Lines, NaN (or 0) rows in .npy. */
  readonly failed: readonly FailedChunk[];
}

/** What survives an interruption, next to the partial output. */
interface Journal {
  readonly input: string;
  readonly written: number;
  readonly bytes: number;
  readonly rows: number;
  readonly columns: number;
  readonly dtype: NpyDtype;
  readonly failed: FailedChunk[];
}

/**
 * Streams an input file onto the queue as chunk jobs, and writes the workers'
 * vectors to the output in input order as chunks complete. Job ids are
 * deterministic (a hash of the input file and the options, and the chunk
 * index), so a second run after an interruption reuses the chunks that
 * finished and only enqueues the rest; what was written is kept (a journal
 * next to the partial output records it). Each result is deleted from Redis
 * once written, and only `window` jobs wait beyond the next one to write, so
 * neither memory nor Redis grows with the input.
 */
export async function submitEmbeddings(options: SubmitOptions): Promise<SubmitSummary> {
  const { input, output, chunkTexts = 256, window = 64, attempts = 3 } = options;
  const embedOptions = options.options ?? {};
  const npy = /\.npy$/i.test(output);
  const { hash, lines } = await scanInput(input);
  const inputId = createHash('sha256').update(JSON.stringify([hash, embedOptions, chunkTexts, JOB_FORMAT_VERSION])).digest('hex').slice(0, 24);
  const chunks = Math.ceil(lines / chunkTexts);
  const partial = `${output}.partial`;
  const journalFile = `${partial}.json`;
  let journal = resume(journalFile, partial, inputId) ?? { input: inputId, written: 0, bytes: 0, rows: 0, columns: 0, dtype: '<f4', failed: [] };
  if (journal.written === 0) {
    writeFileSync(partial, npy ? npyHeader(0, 0) : '');
    journal = { ...journal, bytes: statSync(partial).size };
  }
  const resumedChunks = journal.written;

  // Loaded on first use, not where the package is imported (see `serve`).
  const bullmq = await import('bullmq');
  const connection = await connectRedis(options.redis);
  // Queue events block on their own connection.
  const eventsConnection = await connectRedis(options.redis);
  const name = options.queue ?? DEFAULT_QUEUE;
  const queue = new bullmq.Queue<ChunkJob, ChunkResult>(name, { connection });
  // Each job waited for listens for the queue closing: `window` of them at once is expected, not a leak.
  queue.setMaxListeners(window + 11);
  const events = new bullmq.QueueEvents(name, { connection: eventsConnection });
  const fd = openSync(partial, 'r+');
  // Jobs being added: a run that ends early lets their commands finish before it closes the connection.
  const adding = new Set<Promise<Job>>();
  try {
    await events.waitUntilReady();
    const reader = chunkReader(input, chunkTexts, journal.written * chunkTexts);
    const waiting = new Map<number, Promise<Outcome>>();
    // A command Redis refuses, for any chunk, ends the run at once rather than when that chunk's turn comes.
    let refuse!: (error: Error) => void;
    const refused = new Promise<never>((_, reject) => (refuse = reject));
    refused.catch(() => undefined);
    let enqueued = journal.written;
    let deferredRows = 0;
    const started = performance.now();
    let textsThisRun = 0;
    for (let chunk = journal.written; chunk < chunks; chunk++) {
      while (enqueued < chunks && enqueued <= chunk + window) {
        const texts = await reader.next();
        const firstLine = enqueued * chunkTexts + 1;
        const what = `lines ${firstLine}-${firstLine + texts.length - 1} of ${input}`;
        const added = addChunkJob(queue, `${inputId}-${enqueued}`, { version: JOB_FORMAT_VERSION, input: inputId, chunk: enqueued, firstLine, texts, options: embedOptions }, attempts);
        adding.add(added);
        const pending = added.then(
          (job) => (adding.delete(added), waitForJob(job, events)),
          (error: Error) => {
            adding.delete(added);
            // Only the message: ioredis's error carries the whole command, texts included.
            refuse(new RedisRefusedError(maskUrl(options.redis), what, error.message));
            return refused;
          },
        );
        pending.catch(() => undefined);
        waiting.set(enqueued, pending);
        enqueued++;
      }
      const outcome = await Promise.race([waiting.get(chunk)!, refused]);
      waiting.delete(chunk);
      const firstLine = chunk * chunkTexts + 1;
      const count = Math.min(chunkTexts, lines - chunk * chunkTexts);
      let bytes: Buffer;
      if ('vectors' in outcome) {
        const rows = outcome.vectors;
        if (journal.columns === 0 && rows.length > 0) journal = { ...journal, columns: rows[0].length, dtype: dtypeOf(rows[0]) };
        // Rows of chunks that failed before any width was known are written now, in their place.
        const filler = npy ? fillerRows(deferredRows, journal.columns, journal.dtype) : Buffer.alloc(0);
        deferredRows = 0;
        bytes = Buffer.concat([filler, npy ? npyBody(rows) : jsonLines(rows, firstLine - 1)]);
      } else {
        journal = { ...journal, failed: [...journal.failed, { firstLine, lastLine: firstLine + count - 1, reason: outcome.error }] };
        if (npy && journal.columns === 0) deferredRows += count;
        bytes = npy && journal.columns > 0 ? fillerRows(count, journal.columns, journal.dtype) : Buffer.alloc(0);
      }
      writeSync(fd, bytes, 0, bytes.length, journal.bytes);
      journal = { ...journal, written: chunk + 1, bytes: journal.bytes + bytes.length, rows: journal.rows + count };
      writeJournal(journalFile, journal);
      // Collected: the result leaves Redis.
      await outcome.job.remove().catch(() => undefined);
      textsThisRun += count;
      options.onProgress?.({
        chunksDone: chunk + 1,
        chunks,
        textsDone: journal.rows,
        texts: lines,
        rate: textsThisRun / ((performance.now() - started) / 1000),
      });
    }
  } finally {
    closeSync(fd);
    await Promise.allSettled(adding);
    await events.close();
    await queue.close();
    connection.disconnect();
    eventsConnection.disconnect();
  }
  if (npy) finishNpyFile(partial, journal.rows, journal.columns, journal.dtype);
  renameSync(partial, output);
  rmSync(journalFile, { force: true });
  return { texts: lines, chunks, resumedChunks, failed: journal.failed };
}

type Outcome = { job: Job; vectors: (Float32Array | Int8Array | Uint8Array)[] } | { job: Job; error: string };

/**
 * Adds a chunk's job, or finds the one a previous run added (retrying it if it
 * had failed). Rejects with Redis's error when it refuses a command.
 */
async function addChunkJob(queue: Queue<ChunkJob, ChunkResult>, jobId: string, data: ChunkJob, attempts: number): Promise<Job<ChunkJob, ChunkResult>> {
  const job = await queue.getJob(jobId);
  if (job !== undefined && (await job.getState()) === 'failed') await job.retry();
  return (
    job ??
    queue.add('embed', data, {
      jobId,
      attempts,
      backoff: { type: 'exponential', delay: 1000 },
      // Results wait for submit to collect them; uncollected ones (a submit that never came back) go after a week.
      removeOnComplete: { age: 7 * 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
    })
  );
}

/** The job's vectors once a worker has embedded them, or why it failed after its last attempt. */
async function waitForJob(job: Job<ChunkJob, ChunkResult>, events: QueueEvents): Promise<Outcome> {
  try {
    return { job, vectors: decodeResult(await job.waitUntilFinished(events)) };
  } catch (error) {
    return { job, error: (error as Error).message };
  }
}

/** The journal of an interrupted run of the same input and options, with the partial output cut back to what it recorded. */
function resume(journalFile: string, partial: string, inputId: string): Journal | undefined {
  if (!existsSync(journalFile) || !existsSync(partial)) return undefined;
  try {
    const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as Journal;
    if (journal.input !== inputId || statSync(partial).size < journal.bytes) return undefined;
    // A chunk written after the journal's last update is written again.
    truncateSync(partial, journal.bytes);
    return journal;
  } catch {
    return undefined;
  }
}

function writeJournal(file: string, journal: Journal): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(journal));
  renameSync(`${file}.tmp`, file);
}

/** The input's SHA-256 and its number of texts (lines), read once as a stream. */
async function scanInput(path: string): Promise<{ hash: string; lines: number }> {
  const hash = createHash('sha256');
  let lines = 0;
  let last = 0x0a;
  for await (const chunk of createReadStream(path)) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) lines++;
    if (bytes.length > 0) last = bytes[bytes.length - 1];
  }
  // A last line without a newline still counts.
  if (last !== 0x0a) lines++;
  return { hash: hash.digest('hex'), lines };
}

/** The input's texts, `size` at a time, from text `skip` on. */
function chunkReader(path: string, size: number, skip: number) {
  const jsonl = isJsonLines(path);
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity })[Symbol.asyncIterator]();
  let lineNumber = 0;
  return {
    async next(): Promise<string[]> {
      const texts: string[] = [];
      while (texts.length < size) {
        const { value, done } = await lines.next();
        if (done) break;
        lineNumber++;
        if (lineNumber <= skip) continue;
        texts.push(textOfLine(value, lineNumber, path, jsonl));
      }
      return texts;
    },
  };
}

function jsonLines(rows: readonly ArrayLike<number>[], firstIndex: number): Buffer {
  return Buffer.from(rows.map((v, i) => `${JSON.stringify({ index: firstIndex + i, embedding: Array.from(v) })}\n`).join(''));
}

/** Rows standing in for texts that failed: NaN in float32, 0 in the quantized types. */
function fillerRows(rows: number, columns: number, dtype: NpyDtype): Buffer {
  if (dtype !== '<f4') return Buffer.alloc(rows * columns);
  return Buffer.from(new Float32Array(rows * columns).fill(Number.NaN).buffer);
}
