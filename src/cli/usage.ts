import { AUTO_ORDER } from '../backends/select.js';
import { TASK_PREFIXES } from '../pipeline/tokenizer.js';
import { DEFAULT_MODEL } from './model-source.js';

/** The --model, --revision and --offline lines, their descriptions starting at column `width` + 2. */
function modelSourceUsage(width: number): string {
  const line = (flag: string, text: string) => `  ${flag.padEnd(width)}${text}`;
  return [
    line('--model SOURCE', `model folder, or hub repository id (default ${DEFAULT_MODEL},`),
    line('', 'downloaded into NOMIC_EMBED_CACHE, default ~/.cache/nomic-embed, on first use)'),
    line('--revision REV', 'with a hub id: branch, tag or commit (default main)'),
    line('--offline', 'never download (as HF_HUB_OFFLINE=1); a model not cached is an error'),
  ].join('\n');
}

/** What every command accepts besides its own options. */
const COMMON = `common: --verbose (stack traces on errors), --help
exit codes: 0 success, 1 failure, 2 bad arguments`;

const BACKENDS = `auto (default), ${AUTO_ORDER.join(', ')}`;

export const COMMAND_USAGE = {
  embed: `usage: nomic-embed embed [TEXT...] [options]

Embeds texts from the arguments, --input FILE, or stdin (one text per line).

options:
${modelSourceUsage(22)}
  --input FILE          one text per line, or JSON Lines with a "text" field (.jsonl/.ndjson)
  --output FILE         write there instead of stdout; .npy selects the .npy format
  --format jsonl|npy    output format (default jsonl, or npy for a .npy --output)
  --task TASK           ${Object.keys(TASK_PREFIXES).join(', ')}
  --dimensions N        Matryoshka size (768, 512, 256, 128, 64 for nomic-embed-text-v1.5)
  --no-normalize        raw mean-pooled vectors
  --backend NAME        ${BACKENDS}
  --workers N           worker threads, each with its own model (default 1; on wasm
                        without threads, the cores, as memory allows)
  --threads N           threads of the wasm backend per worker (default: the cores)
  --dtype fp32|q8       the products' weights: float32 (default) or int8 with a scale
                        per column, quantized as the model loads (wasm and cpu)
  --max-batch-tokens N  padded tokens per batch (default 2048 on wasm, else 8192)
  --max-length N        truncate texts to N tokens (default: the model's maximum)
  --long-text MODE      truncate (default) or mean: a longer text is the token-weighted
                        mean of its windows of at most --max-length tokens
  --overlap N           tokens consecutive windows share (default 0)
  --precision P         float32 (default), int8, uint8, binary, ubinary (quantized as
                        sentence-transformers; .npy gets dtype |i1 or |u1)
  --calibration FILE    int8/uint8 ranges from these texts' embeddings (one per line);
                        default: ±4/sqrt(dimensions), which suits unit vectors
  --progress            show progress even when stderr is not a terminal
  --quiet               no progress, no summary`,
  pull: `usage: nomic-embed pull [REPO] [options]

Downloads config.json, tokenizer.json, tokenizer_config.json and model.safetensors
of REPO (default nomic-ai/nomic-embed-text-v1.5) into the cache (NOMIC_EMBED_CACHE,
default ~/.cache/nomic-embed), where --model REPO finds it, or into WEIGHTS_DIR/<name>;
verified; run it again to resume an interrupted download. Prints the folder.

options:
  --weights-dir DIR     make the model folder there instead of in the cache
  --revision REV        branch, tag or commit (default main)
  --quiet               no progress
environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN`,
  convert: `usage: nomic-embed convert SRC OUT [options]

Converts a Hugging Face checkpoint folder to the runtime layout (matrices
transposed, q/k/v split), with its config and tokenizer files.

options:
  --dtype float32|float16|q8  storage type (default float32); q8 stores the
                              projections as int8 for loads with --dtype q8
  --quiet                     no progress`,
  info: `usage: nomic-embed info [options]

Prints the backend (and its GPU adapter), the model's config and parameters,
and the memory estimate of one batch.

options:
${modelSourceUsage(22)}
  --backend NAME        ${BACKENDS}
  --threads N           threads to start the wasm backend with (default: the cores)
  --batch B             texts in the batch to estimate (default 32)
  --length L            tokens per text (default 512)`,
  serve: `usage: nomic-embed serve [options]

Serves embeddings over HTTP: POST /v1/embeddings (OpenAI), POST /embed (TEI),
POST /api/embed (Ollama); GET /health, /info, /metrics (Prometheus).
Texts of concurrent requests share forward batches. SIGTERM or SIGINT
drains: idle and incomplete connections close at once, requests whose body
has arrived are answered, then it exits.

options:
${modelSourceUsage(26)}
  --host HOST               address to bind (default 127.0.0.1)
  --port N                  port (default 8080; 0 takes a free one)
  --backend NAME            ${BACKENDS}
  --workers N               worker threads (default as for embed)
  --threads N               threads of the wasm backend per worker (default: the cores)
  --dtype fp32|q8           the products' weights (default fp32; q8 on wasm and cpu)
  --api-key KEY             require Authorization: Bearer KEY (also NOMIC_EMBED_API_KEY)
  --served-model-name NAME  the model name clients send (default the model folder's name)
  --default-task TASK       task prefix for requests that name none: ${Object.keys(TASK_PREFIXES).join(', ')}
  --max-batch-tokens N      padded tokens per forward batch (default 2048 on wasm, else 8192)
  --max-queue-tokens N      tokens waiting at once; beyond, 429 (default 16 × max batch tokens)
  --max-request-texts N     texts per request; beyond, 413 (default 2048)
  --max-body-bytes N        request body size; beyond, 413 (default 33554432)
  --batch-wait-ms N         how long an idle server waits to batch a lone request (default 1)
  --headers-timeout-ms N    time a request's headers get to arrive; past it, 408 (default 10000)
  --request-timeout-ms N    time a whole request gets to arrive, body included; past it, 408 (default 60000)
  --keep-alive-timeout-ms N how long an idle connection stays open (default 5000)
  --max-connections N       open connections at most; more are closed on arrival (default 512)
  --grace-seconds N         time requests in flight get to finish at shutdown (default 30)
  --cors ORIGIN             allow cross-origin requests from ORIGIN (* for any)
  --quiet                   no logs`,
  search: `usage: nomic-embed search --index FILE.npy --texts FILE [options] QUERY...

Prints the texts nearest each query: cosine similarity against a float32
index, Hamming distance against a binary one (as embed --output FILE.npy
writes them, with --precision binary or ubinary for the latter).

options:
  --index FILE.npy      the corpus's embeddings, one row per text
  --texts FILE          the corpus: one text per line, or JSON Lines with a "text" field
  --k N                 how many to print per query (default 10)
  --task TASK           the queries' task prefix (default search_query)
  --precision P         float32, binary or ubinary (default: from the file's dtype,
                        |i1 read as binary, |u1 as ubinary)
${modelSourceUsage(22)}
  --backend NAME        ${BACKENDS}
  --json                JSON Lines: query, rank, index, score or distance, text`,
  worker: `usage: nomic-embed worker --redis URL [options]

Takes chunk jobs from a Redis queue (BullMQ) and embeds them, until SIGTERM
or SIGINT, then finishes the jobs running. Run any number, on any machines
that have the model folder.

options:
  --redis URL           redis://[user:password@]host:port[/db]
  --queue NAME          queue name (default nomic-embed)
${modelSourceUsage(22)}
  --backend NAME        ${BACKENDS}
  --workers N, --threads N   as for embed; on one machine, keep processes × threads
                        at most the cores (idle pool threads spin, and several
                        processes of two threads each on two cores ran 3× slower)
  --dtype fp32|q8       the products' weights (default fp32; q8 on wasm and cpu)
  --max-length N        the longest sequence in tokens (default: the model's)
  --concurrency N       jobs this process runs at once (default 1)
  --lock-seconds N      how long a job stays locked without renewal: a worker that
                        dies leaves its job to others after this; keep it above the
                        longest batch (default 30)
  --quiet               no messages`,
  submit: `usage: nomic-embed submit --redis URL --input FILE --output FILE [options]

Streams the input onto the queue in chunk jobs and writes the workers' vectors
to the output in input order. Run it again after an interruption: it keeps what
was written, reuses the chunks that finished and enqueues the rest. Exits 1,
naming the input lines, when chunks keep failing; everything else is written.

options:
  --redis URL           redis://[user:password@]host:port[/db]
  --queue NAME          queue name (default nomic-embed)
  --input FILE          one text per line, or JSON Lines with a "text" field
  --output FILE         JSON Lines, or a .npy matrix
  --task TASK           ${Object.keys(TASK_PREFIXES).join(', ')}
  --dimensions N        Matryoshka size
  --no-normalize        raw mean-pooled vectors
  --precision P         float32 (default), int8, uint8, binary, ubinary
  --long-text MODE      truncate (default) or mean
  --overlap N           with --long-text mean, tokens consecutive windows share (default 0)
  --truncation MODE     truncate (default) or error: a chunk holding a text longer
                        than the workers' maximum length fails
  --chunk-texts N       texts per job (default 256)
  --window N            jobs queued beyond the next one to write (default 64)
  --attempts N          tries per job (default 3)
  --progress, --quiet   as for embed`,
} as const;

export type CommandName = keyof typeof COMMAND_USAGE;

export function commandUsage(command: CommandName): string {
  return `${COMMAND_USAGE[command]}\n\n${COMMON}`;
}

export const USAGE = `usage: nomic-embed <command> [options]

commands:
  embed [TEXT...]       embed texts from arguments, --input FILE, or stdin
  pull [REPO]           download a model from the Hugging Face hub (default nomic-ai/nomic-embed-text-v1.5)
  convert SRC OUT       convert a Hugging Face checkpoint folder to the runtime layout
  info                  backend, model config, parameters, memory estimate
  serve                 serve embeddings over HTTP (OpenAI, TEI and Ollama APIs)
  search QUERY...       the texts of a corpus nearest each query, from its .npy embeddings
  worker                embed chunk jobs from a Redis queue (for corpora beyond one machine)
  submit                put an input file on the queue and write the vectors back in order

\`nomic-embed <command> --help\` prints a command's options.

${COMMON}`;
