import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadEmbedder } from '../embedder.js';
import { PRECISIONS } from '../pipeline/quantize.js';
import { maskUrl, redisReason } from '../queue/connection.js';
import { DEFAULT_QUEUE, startQueueWorker } from '../queue/queue-worker.js';
import { submitEmbeddings } from '../queue/submit.js';
import { argsConfig, EMBEDDER_OPTIONS, embedderOptions, choiceOption, integerOption, LONG_TEXT_MODES, TASKS, TRUNCATIONS, UsageError } from './args.js';
import { modelFolder } from './model-source.js';
import { describeParallelism } from './embed-command.js';
import type { CliIo } from './main.js';
import { ProgressBar } from './progress.js';

/** `nomic-embed worker`: embeds chunk jobs from the queue until SIGTERM or SIGINT, then finishes the running ones. */
export async function workerCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(
    argsConfig(args, {
      redis: { type: 'string' },
      queue: { type: 'string' },
      ...EMBEDDER_OPTIONS,
      'max-length': { type: 'string' },
      concurrency: { type: 'string' },
      'lock-seconds': { type: 'string' },
      quiet: { type: 'boolean' },
    }),
  );
  if (positionals.length > 0) throw new UsageError(`worker takes no arguments, got "${positionals[0]}"`);
  if (values.redis === undefined) throw new UsageError('worker needs --redis URL');
  const dir = await modelFolder(values, io);
  const say = (line: string) => void (values.quiet || io.stderr.write(`nomic-embed worker: ${line}\n`));
  const embedder = await loadEmbedder(dir, embedderOptions(values));
  let worker;
  try {
    worker = await startQueueWorker(embedder, {
      redis: values.redis,
      queue: values.queue,
      concurrency: integerOption('concurrency', values.concurrency),
      lockMs: (integerOption('lock-seconds', values['lock-seconds']) ?? 30) * 1000,
    });
  } catch (error) {
    await embedder.dispose();
    throw error;
  }
  say(`taking jobs from queue "${values.queue ?? DEFAULT_QUEUE}" at ${maskUrl(values.redis)} on ${embedder.backend} (${describeParallelism(embedder)})`);
  worker.on('failed', (job, error) => say(`job ${job?.id} failed: ${error.message}`));
  worker.on('error', reportRedisTrouble(values.redis, say));
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  say(`${signal}: finishing the jobs running; a second signal stops at once`);
  process.once('SIGTERM', () => process.exit(130));
  process.once('SIGINT', () => process.exit(130));
  await worker.close();
  await embedder.dispose();
  return 0;
}

/**
 * What goes wrong between the worker and Redis (a restart, a full Redis that
 * cannot store a result) is said, not swallowed: once per kind of error every
 * 30 s, as a reconnecting client meets the same error many times a second.
 */
function reportRedisTrouble(url: string, say: (line: string) => void): (error: Error) => void {
  const lastSaid = new Map<string, number>();
  return (error) => {
    // Only the message: ioredis's error carries the whole command, a job's texts included.
    const message = redisReason(error.message);
    const now = Date.now();
    if (now - (lastSaid.get(message) ?? -Infinity) < 30_000) return;
    lastSaid.set(message, now);
    say(`Redis at ${maskUrl(url)}: ${message} (retrying; jobs not finished are handed out again)`);
  };
}

/** `nomic-embed submit`: an input file onto the queue, the vectors back to the output in order. */
export async function submitCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(
    argsConfig(args, {
      redis: { type: 'string' },
      queue: { type: 'string' },
      input: { type: 'string' },
      output: { type: 'string' },
      task: { type: 'string' },
      dimensions: { type: 'string' },
      'no-normalize': { type: 'boolean' },
      precision: { type: 'string' },
      'long-text': { type: 'string' },
      overlap: { type: 'string' },
      truncation: { type: 'string' },
      'chunk-texts': { type: 'string' },
      window: { type: 'string' },
      attempts: { type: 'string' },
      progress: { type: 'boolean' },
      quiet: { type: 'boolean' },
    }),
  );
  if (positionals.length > 0) throw new UsageError(`submit takes no arguments, got "${positionals[0]}"`);
  if (values.redis === undefined || values.input === undefined || values.output === undefined) {
    throw new UsageError('submit needs --redis URL, --input FILE and --output FILE');
  }
  if (!existsSync(values.input)) throw new UsageError(`--input ${values.input}: no such file`);
  const task = choiceOption('task', values.task, TASKS);
  const precision = choiceOption('precision', values.precision, PRECISIONS) ?? 'float32';
  const longText = choiceOption('long-text', values['long-text'], LONG_TEXT_MODES);
  const truncation = choiceOption('truncation', values.truncation, TRUNCATIONS);
  const bar = !values.quiet && (values.progress || io.stderr.isTTY === true) ? new ProgressBar(io.stderr, 'embedding', 'texts') : undefined;
  const summary = await submitEmbeddings({
    redis: values.redis,
    queue: values.queue,
    input: values.input,
    output: values.output,
    options: {
      task,
      dimensions: integerOption('dimensions', values.dimensions),
      normalize: values['no-normalize'] ? false : undefined,
      precision: precision === 'float32' ? undefined : precision,
      longText,
      overlap: integerOption('overlap', values.overlap, 0),
      truncation,
    },
    chunkTexts: integerOption('chunk-texts', values['chunk-texts']),
    window: integerOption('window', values.window),
    attempts: integerOption('attempts', values.attempts),
    onProgress: (p) => bar?.update(p.textsDone, p.texts),
  });
  bar?.finish(summary.texts, summary.texts);
  if (!values.quiet) {
    const resumed = summary.resumedChunks > 0 ? `, ${summary.resumedChunks} of them written by an earlier run` : '';
    io.stderr.write(`wrote ${summary.texts} texts in ${summary.chunks} chunks to ${values.output}${resumed}\n`);
  }
  for (const failed of summary.failed) {
    io.stderr.write(`nomic-embed submit: lines ${failed.firstLine}-${failed.lastLine} of ${values.input} failed: ${failed.reason}\n`);
  }
  return summary.failed.length > 0 ? 1 : 0;
}
