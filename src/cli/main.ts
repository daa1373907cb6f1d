import { createReadStream, createWriteStream, existsSync, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AUTO_ORDER, selectBackend, type BackendChoice } from '../backends/select.js';
import { loadEmbedder, type EmbedOptions, type Embedder } from '../embedder.js';
import { pull } from '../download/pull.js';
import { InputError, NomicEmbedError } from '../errors.js';
import { readConfig } from '../model/load-model.js';
import { estimateMemory } from '../pipeline/memory.js';
import { TASK_PREFIXES, type Task } from '../pipeline/tokenizer.js';
import { convertWeights, type ConvertDtype } from '../weights/convert.js';
import { parameterCount, weightTable } from '../weights/weight-table.js';
import { finishNpyFile, npyBody, npyHeader } from './npy.js';
import { formatBytes, formatDuration, ProgressBar } from './progress.js';

/** Exit codes: documented in the README. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export const DEFAULT_MODEL_DIR = 'weights/nomic-embed-text-v1.5';

/** Wrong arguments: exit code 2 and a pointer to --help. */
class UsageError extends NomicEmbedError {
  override name = 'UsageError';
}

const USAGE = `usage: nomic-embed <command> [options]

commands:
  embed [TEXT...]       embed texts from arguments, --input FILE, or stdin
  pull [REPO]           download a model from the Hugging Face hub (default nomic-ai/nomic-embed-text-v1.5)
  convert SRC OUT       convert a Hugging Face checkpoint folder to the runtime layout
  info                  backend, model config, parameters, memory estimate

embed options:
  --model DIR           model folder (default ${DEFAULT_MODEL_DIR})
  --input FILE          one text per line, or JSONL with a "text" field (.jsonl/.ndjson)
  --output FILE         write there instead of stdout; .npy selects the .npy format
  --format jsonl|npy    output format (default jsonl, or npy for a .npy --output)
  --task TASK           ${Object.keys(TASK_PREFIXES).join(', ')}
  --dimensions N        Matryoshka size (768, 512, 256, 128, 64 for nomic-embed-text-v1.5)
  --no-normalize        raw mean-pooled vectors
  --backend NAME        auto (default), ${AUTO_ORDER.join(', ')}
  --max-batch-tokens N  padded tokens per batch (default 8192)
  --max-length N        truncate texts to N tokens (default: the model's maximum)
  --progress            show progress even when stderr is not a terminal
  --quiet               no progress, no summary

convert options:
  --dtype float32|float16   storage type (default float32)

info options:
  --model DIR, --backend NAME, --batch B, --length L

common: --verbose (stack traces on errors), --help
environment: HF_ENDPOINT, HF_TOKEN (pull)
exit codes: 0 success, 1 failure, 2 bad arguments`;

/** Runs the command line; resolves to the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const verbose = argv.includes('--verbose');
  try {
    const [command, ...rest] = argv;
    switch (command) {
      case 'embed':
        return await embedCommand(rest, io);
      case 'pull':
        return await pullCommand(rest, io);
      case 'convert':
        return convertCommand(rest, io);
      case 'info':
        return await infoCommand(rest, io);
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        io.stdout.write(`${USAGE}\n`);
        return command === undefined ? EXIT.usage : EXIT.ok;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    return report(error, verbose, io);
  }
}

export interface CliIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

function defaultIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
}

function report(error: unknown, verbose: boolean, io: CliIo): number {
  const usage = error instanceof UsageError || error instanceof InputError || isParseArgsError(error);
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`nomic-embed: error: ${message}\n`);
  if (usage) io.stderr.write('run `nomic-embed --help` for the options\n');
  if (verbose && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
  return usage ? EXIT.usage : EXIT.failure;
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T) {
  return parseArgs({ args: [...args], options: { ...options, verbose: { type: 'boolean' } }, allowPositionals: true, strict: true });
}

function integerOption(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer of at least ${min}, got "${value}"`);
  return n;
}

function modelDir(value: string | undefined): string {
  const dir = value ?? DEFAULT_MODEL_DIR;
  if (!existsSync(dir)) {
    throw new UsageError(
      value === undefined
        ? `no model at ${dir}; run \`nomic-embed pull\` to download it, or pass --model DIR`
        : `--model ${dir}: no such folder`,
    );
  }
  return dir;
}

function backendOption(value: string | undefined): BackendChoice {
  const backend = (value ?? 'auto') as BackendChoice;
  if (backend !== 'auto' && !AUTO_ORDER.includes(backend)) {
    throw new UsageError(`--backend must be auto or one of ${AUTO_ORDER.join(', ')}, got "${value}"`);
  }
  return backend;
}

async function embedCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    model: { type: 'string' },
    input: { type: 'string' },
    output: { type: 'string' },
    format: { type: 'string' },
    task: { type: 'string' },
    dimensions: { type: 'string' },
    'no-normalize': { type: 'boolean' },
    backend: { type: 'string' },
    'max-batch-tokens': { type: 'string' },
    'max-length': { type: 'string' },
    progress: { type: 'boolean' },
    quiet: { type: 'boolean' },
  });
  if (positionals.length > 0 && values.input !== undefined) throw new UsageError('pass texts as arguments or --input, not both');
  const format = values.format ?? (values.output?.endsWith('.npy') ? 'npy' : 'jsonl');
  if (format !== 'jsonl' && format !== 'npy') throw new UsageError(`--format must be jsonl or npy, got "${format}"`);
  if (format === 'npy' && values.output === undefined) {
    throw new UsageError('.npy output needs --output FILE (its header holds the row count, written last)');
  }
  if (values.task !== undefined && !(values.task in TASK_PREFIXES)) {
    throw new UsageError(`--task must be one of ${Object.keys(TASK_PREFIXES).join(', ')}, got "${values.task}"`);
  }
  const embedOptions: EmbedOptions = {
    task: values.task as Task | undefined,
    dimensions: integerOption('dimensions', values.dimensions),
    normalize: !values['no-normalize'],
    maxBatchTokens: integerOption('max-batch-tokens', values['max-batch-tokens']),
  };
  const source = textSource(positionals, values.input, io);
  const dir = modelDir(values.model);
  const embedder = await loadEmbedder(dir, {
    backend: backendOption(values.backend),
    maxLength: integerOption('max-length', values['max-length'], 2),
  });
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
  const jsonl = input !== undefined && /\.(jsonl|ndjson)$/i.test(input);
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
      chunk.push(jsonl ? jsonText(line, lineNumber, input!) : line);
      if (chunk.length === CHUNK_TEXTS) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }
  return { chunks: chunks(), position: total === undefined ? undefined : () => ({ done: Math.min(consumed, total), total }) };
}

function jsonText(line: string, lineNumber: number, file: string): string {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    throw new InputError(`${file}:${lineNumber}`, 'not valid JSON');
  }
  const text = (record as { text?: unknown } | null)?.text;
  if (typeof text !== 'string') throw new InputError(`${file}:${lineNumber}`, 'needs a string field "text"');
  return text;
}

interface OutputSettings {
  readonly format: 'jsonl' | 'npy';
  readonly output: string | undefined;
  readonly progress: ProgressBar | undefined;
  readonly summary: boolean;
  readonly io: CliIo;
}

async function streamEmbeddings(embedder: Embedder, source: TextSource, options: EmbedOptions, out: OutputSettings): Promise<number> {
  const file: WriteStream | undefined = out.output === undefined ? undefined : createWriteStream(out.output);
  const sink = file ?? out.io.stdout;
  const write = (data: string | Buffer) =>
    new Promise<void>((resolve, reject) => sink.write(data, (error?: Error | null) => (error ? reject(error) : resolve())));
  if (out.format === 'npy') await write(npyHeader(0, 0));
  let index = 0;
  let dimensions = 0;
  const totals = { texts: 0, tokens: 0, paddedTokens: 0, batches: 0, retries: 0, truncated: 0, peak: 0, ms: 0 };
  const started = performance.now();
  try {
    for await (const texts of source.chunks) {
      const base = index;
      const result = await embedder.embed(texts, {
        ...options,
        onProgress: (done) => out.progress?.update(base + done, source.position === undefined ? undefined : estimateTotal(base + done, source)),
      });
      dimensions = result.dimensions;
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
  if (out.format === 'npy') finishNpyFile(out.output!, index, dimensions);
  out.progress?.finish(index, index);
  if (out.summary) {
    const seconds = (performance.now() - started) / 1000;
    const padding = totals.paddedTokens === 0 ? 0 : 1 - totals.tokens / totals.paddedTokens;
    out.io.stderr.write(
      `embedded ${totals.texts} texts (${totals.tokens} tokens, ${totals.truncated} truncated) in ${formatDuration(seconds)} on ${embedder.backend}: ` +
        `${(totals.texts / seconds).toFixed(1)} texts/s, ${(totals.tokens / seconds).toFixed(0)} tokens/s, ` +
        `${totals.batches} batches, ${(padding * 100).toFixed(1)}% padding, ${totals.retries} retries, peak tensor memory ${formatBytes(totals.peak)}\n`,
    );
  }
  return EXIT.ok;
}

/** Texts in the whole file, extrapolated from the bytes read so far. */
function estimateTotal(done: number, source: TextSource): number | undefined {
  const position = source.position?.();
  if (position === undefined || position.done === 0) return undefined;
  return Math.max(done, Math.round((done * position.total) / position.done));
}

async function pullCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { 'weights-dir': { type: 'string' }, revision: { type: 'string' }, quiet: { type: 'boolean' } });
  if (positionals.length > 1) throw new UsageError('pull takes one repository');
  const showProgress = !values.quiet && io.stderr.isTTY === true;
  let bar: { file: string; progress: ProgressBar; done: number } | undefined;
  const dir = await pull({
    repo: positionals[0],
    weightsDir: values['weights-dir'],
    revision: values.revision,
    onProgress: (file, done, total) => {
      if (!showProgress) return;
      if (bar?.file !== file) bar = { file, progress: new ProgressBar(io.stderr, file, 'B', formatBytes), done: 0 };
      bar.done = done;
      bar.progress.update(done, total);
    },
    onFileDone: (file, status) => {
      if (bar?.file === file) bar.progress.finish(bar.done, bar.done);
      bar = undefined;
      const what = { present: 'already complete', absent: 'not in the repository (optional)', downloaded: 'downloaded and verified' }[status];
      if (!values.quiet) io.stderr.write(`${file}: ${what}\n`);
    },
  });
  io.stdout.write(`${dir}\n`);
  return EXIT.ok;
}

function convertCommand(args: readonly string[], io: CliIo): number {
  const { values, positionals } = parse(args, { dtype: { type: 'string' }, quiet: { type: 'boolean' } });
  if (positionals.length !== 2) throw new UsageError('convert needs SOURCE_DIR and OUT_DIR');
  const dtype = (values.dtype ?? 'float32') as ConvertDtype;
  if (dtype !== 'float32' && dtype !== 'float16') throw new UsageError(`--dtype must be float32 or float16, got "${values.dtype}"`);
  const [source, out] = positionals;
  if (!existsSync(source)) throw new UsageError(`${source}: no such folder`);
  const bar = !values.quiet && io.stderr.isTTY === true ? new ProgressBar(io.stderr, 'converting', 'tensors') : undefined;
  const { path, tensors } = convertWeights(source, out, { dtype, onProgress: (done, total) => bar?.update(done, total) });
  bar?.finish(tensors, tensors);
  if (!values.quiet) io.stderr.write(`wrote ${tensors} tensors (${dtype}) to ${path}\n`);
  return EXIT.ok;
}

async function infoCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { model: { type: 'string' }, backend: { type: 'string' }, batch: { type: 'string' }, length: { type: 'string' } });
  const dir = modelDir(values.model);
  const config = readConfig(dir);
  const backend = await selectBackend(backendOption(values.backend));
  const batch = integerOption('batch', values.batch) ?? 32;
  const length = integerOption('length', values.length) ?? 512;
  const estimate = estimateMemory(config, batch, length, { perHead: backend === 'wasm' });
  const lines = [
    `backend: ${backend}`,
    `model: ${dir}`,
    `config: ${config.n_layer} layers, hidden ${config.n_embd}, ${config.n_head} heads, SwiGLU ${config.ffnWidth}, vocab ${config.paddedVocabSize}, ` +
      `max positions ${config.n_positions}, rotary base ${config.rotary_emb_base}, NTK scaling ${config.rotary_scaling_factor ?? 'off'}`,
    `parameters: ${parameterCount(weightTable(config, 'hf')).toLocaleString('en-US')}`,
    `memory for a batch of ${batch} × ${length} tokens: ${formatBytes(estimate.totalBytes)} ` +
      `(weights ${formatBytes(estimate.weightBytes)}, activations ${formatBytes(estimate.activationBytes)}, of which attention scores ${formatBytes(estimate.attentionBytes)})`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  return EXIT.ok;
}
