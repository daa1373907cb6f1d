import { AUTO_ORDER } from '../backends/select.js';
import { InputError } from '../errors.js';
import { TASK_PREFIXES } from '../pipeline/tokenizer.js';
import { DEFAULT_MODEL_DIR, UsageError } from './args.js';
import { convertCommand, infoCommand, pullCommand } from './commands.js';
import { embedCommand } from './embed-command.js';

/** Exit codes: documented in the README. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

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
