import { createReadStream, createWriteStream, existsSync, readFileSync, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { loadEmbedder, type Embedder } from '../embedder.js';
import type { EmbedOptions } from '../pipeline/embed-options.js';
import { PRECISIONS, type Precision } from '../pipeline/quantize.js';
import { argsConfig, EMBEDDER_OPTIONS, embedderOptions, choiceOption, integerOption, LONG_TEXT_MODES, TASKS, UsageError } from './args.js';
import { modelFolder } from './model-source.js';
import type { CliIo } from './main.js';
import { isJsonLines, textOfLine } from '../formats/text-lines.js';
import { dtypeOf, finishNpyFile, npyBody, npyHeader, type NpyDtype } from '../formats/npy.js';
import { formatBytes, formatDuration, ProgressBar } from './progress.js';

/** `nomic-embed embed`: texts from arguments, a file or stdin, to JSONL or .npy. */
export async function embedCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(argsConfig(args, {
    ...EMBEDDER_OPTIONS,
    input: { type: 'string' },
    output: { type: 'string' },
    format: { type: 'string' },
    task: { type: 'string' },
    dimensions: { type: 'string' },
    'no-normalize': { type: 'boolean' },
    'max-batch-tokens': { type: 'string' },
    'max-length': { type: 'string' },
    'long-text': { type: 'string' },
    overlap: { type: 'string' },
    precision: { type: 'string' },
    calibration: { type: 'string' },
    progress: { type: 'boolean' },
    quiet: { type: 'boolean' },
  }));
  if (positionals.length > 0 && values.input !== undefined) throw new UsageError('pass texts as arguments or --input, not both');
  const format = choiceOption('format', values.format ?? (values.output?.endsWith('.npy') ? 'npy' : 'jsonl'), ['jsonl', 'npy'] as const)!;
  if (format === 'npy' && values.output === undefined) {
    throw new UsageError('.npy output needs --output FILE (its header holds the row count, written last)');
  }
  const task = choiceOption('task', values.task, TASKS);
  const precision = choiceOption('precision', values.precision, PRECISIONS) ?? 'float32';
  const longText = choiceOption('long-text', values['long-text'], LONG_TEXT_MODES) ?? 'truncate';
  if (values.calibration !== undefined && !existsSync(values.calibration)) throw new UsageError(`--calibration ${values.calibration}: no such file`);
  const embedOptions: EmbedOptions<Precision> = {
    task,
    dimensions: integerOption('dimensions', values.dimensions),
    normalize: !values['no-normalize'],
    maxBatchTokens: integerOption('max-batch-tokens', values['max-batch-tokens']),
    longText,
    overlap: integerOption('overlap', values.overlap, 0),
    precision,
    calibration: values.calibration === undefined ? undefined : readFileSync(values.calibration, 'utf8').split('\n').filter((l) => l.length > 0),
  };
  const source = textSource(positionals, values.input, io);
  const dir = await modelFolder(values, io);
  const embedder = await loadEmbedder(dir, embedderOptions(values));
  try {
    const showProgress = !values.quiet && (values.progress || io.stderr.isTTY === true);
    return await streamEmbeddings(embedder, source, embedOptions, {
      format,
      output: values.output,
      progress: showProgress ? new ProgressBar(io.stderr, 'embedding', 'texts') : undefined,
      summary: !values.quiet,
      io,
    });
  } finally {
    embedder.dispose();
  }
}

interface TextSource {
  /** Texts in chunks, so a file of any size streams through bounded memory. */
  readonly chunks: AsyncIterable<string[]>;
  /** Bytes of input consumed so far and in all, when the input is a file. */
  readonly position?: () => { done: number; total: number };
}

/** Texts per chunk handed to `embed`: enough to fill batches, small enough to bound memory. */
const CHUNK_TEXTS = 1024;

function textSource(positionals: readonly string[], input: string | undefined, io: CliIo): TextSource {
  if (positionals.length > 0) {
    return { chunks: (async function* () { yield [...positionals]; })() };
  }
  if (input === undefined && io.stdin.isTTY === true) {
    throw new UsageError('no texts: pass them as arguments, with --input FILE, or on stdin');
  }
  if (input !== undefined && !existsSync(input)) throw new UsageError(`--input ${input}: no such file`);
  const jsonl = input !== undefined && isJsonLines(input);
  const stream = input === undefined ? io.stdin : createReadStream(input);
  const total = input === undefined ? undefined : statSync(input).size;
  let consumed = 0;
  async function* chunks() {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let chunk: string[] = [];
    let lineNumber = 0;
    for await (const line of lines) {
      lineNumber++;
      consumed += Buffer.byteLength(line) + 1;
      chunk.push(textOfLine(line, lineNumber, input ?? 'stdin', jsonl));
      if (chunk.length === CHUNK_TEXTS) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }
  return { chunks: chunks(), position: total === undefined ? undefined : () => ({ done: Math.min(consumed, total), total }) };
}


interface OutputSettings {
  readonly format: 'jsonl' | 'npy';
  readonly output: string | undefined;
  readonly progress: ProgressBar | undefined;
  readonly summary: boolean;
  readonly io: CliIo;
}

async function streamEmbeddings(embedder: Embedder, source: TextSource, initial: EmbedOptions<Precision>, out: OutputSettings): Promise<number> {
  let options = initial;
  const file: WriteStream | undefined = out.output === undefined ? undefined : createWriteStream(out.output);
  const sink = file ?? out.io.stdout;
  const write = (data: string | Buffer) =>
    new Promise<void>((resolve, reject) => sink.write(data, (error?: Error | null) => (error ? reject(error) : resolve())));
  if (out.format === 'npy') await write(npyHeader(0, 0));
  let index = 0;
  let columns = 0;
  let dtype: NpyDtype = '<f4';
  const totals = { texts: 0, tokens: 0, paddedTokens: 0, batches: 0, retries: 0, truncated: 0, peak: 0, ms: 0 };
  const started = performance.now();
  try {
    for await (const texts of source.chunks) {
      const base = index;
      const result = await embedder.embed(texts, {
        ...options,
        onProgress: (done) => out.progress?.update(base + done, source.position === undefined ? undefined : estimateTotal(base + done, source)),
      });
      // Calibrated once: every later chunk is quantized over the same ranges.
      if (result.ranges !== undefined) options = { ...options, ranges: result.ranges, calibration: undefined };
      if (result.embeddings.length > 0) {
        columns = result.embeddings[0].length;
        dtype = dtypeOf(result.embeddings[0]);
      }
      if (out.format === 'npy') await write(npyBody(result.embeddings));
      else await write(result.embeddings.map((e, i) => `${JSON.stringify({ index: base + i, embedding: Array.from(e) })}\n`).join(''));
      index += texts.length;
      const s = result.stats;
      totals.texts += s.texts;
      totals.tokens += s.tokens;
      totals.paddedTokens += s.paddedTokens;
      totals.batches += s.batches;
      totals.retries += s.retries;
      totals.truncated += s.truncatedTexts;
      totals.peak = Math.max(totals.peak, s.measuredPeakBytes);
    }
  } finally {
    if (file !== undefined) await new Promise<void>((resolve) => file.end(resolve));
  }
  if (out.format === 'npy') finishNpyFile(out.output!, index, columns, dtype);
  out.progress?.finish(index, index);
  if (out.summary) {
    const seconds = (performance.now() - started) / 1000;
    const padding = totals.paddedTokens === 0 ? 0 : 1 - totals.tokens / totals.paddedTokens;
    out.io.stderr.write(
      `embedded ${totals.texts} texts (${totals.tokens} tokens, ${totals.truncated} truncated) in ${formatDuration(seconds)} on ${embedder.backend}${embedder.dtype === 'fp32' ? '' : ` in ${embedder.dtype}`} (${describeParallelism(embedder)}): ` +
        `${(totals.texts / seconds).toFixed(1)} texts/s, ${(totals.tokens / seconds).toFixed(0)} tokens/s, ` +
        `${totals.batches} batches, ${(padding * 100).toFixed(1)}% padding, ${totals.retries} retries, peak tensor memory ${formatBytes(totals.peak)}\n`,
    );
  }
  return 0;
}

/** Texts in the whole file, extrapolated from the bytes read so far. */
function estimateTotal(done: number, source: TextSource): number | undefined {
  const position = source.position?.();
  if (position === undefined || position.done === 0) return undefined;
  return Math.max(done, Math.round((done * position.total) / position.done));
}

/** `2 workers`, `1 worker × 2 threads`. */
export function describeParallelism(embedder: Embedder): string {
  const workers = `${embedder.workers} worker${embedder.workers === 1 ? '' : 's'}`;
  return embedder.threads > 1 ? `${workers} × ${embedder.threads} threads` : workers;
}
