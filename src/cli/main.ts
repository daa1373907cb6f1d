import { InputError } from '../errors.js';
import { UsageError } from './args.js';
import { convertCommand, infoCommand, pullCommand } from './commands.js';
import { embedCommand } from './embed-command.js';
import { submitCommand, workerCommand } from './queue-commands.js';
import { searchCommand } from './search-command.js';
import { serveCommand } from './serve-command.js';
import { commandUsage, COMMAND_USAGE, USAGE, type CommandName } from './usage.js';

/** Exit codes: documented in the README. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Runs the command line; resolves to the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const verbose = argv.includes('--verbose');
  try {
    const [command, ...rest] = argv;
    if (command in COMMAND_USAGE && (rest.includes('--help') || rest.includes('-h'))) {
      io.stdout.write(`${commandUsage(command as CommandName)}\n`);
      return EXIT.ok;
    }
    switch (command) {
      case 'embed':
        return await embedCommand(rest, io);
      case 'pull':
        return await pullCommand(rest, io);
      case 'convert':
        return convertCommand(rest, io);
      case 'info':
        return await infoCommand(rest, io);
      case 'serve':
        return await serveCommand(rest, io);
      case 'search':
        return await searchCommand(rest, io);
      case 'worker':
        return await workerCommand(rest, io);
      case 'submit':
        return await submitCommand(rest, io);
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
    return report(error, verbose, io, argv[0] in COMMAND_USAGE ? `nomic-embed ${argv[0]} --help` : 'nomic-embed --help');
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

function report(error: unknown, verbose: boolean, io: CliIo, help: string): number {
  const usage = error instanceof UsageError || error instanceof InputError || isParseArgsError(error);
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`nomic-embed: error: ${message}\n`);
  if (usage) io.stderr.write(`run \`${help}\` for the options\n`);
  if (verbose && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
  return usage ? EXIT.usage : EXIT.failure;
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}
