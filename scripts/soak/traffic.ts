/**
 * A load generator for `nomic-embed serve` as an operator meets it: clients
 * sending valid requests on all three APIs, each answer's vectors checked
 * against known embeddings, mixed with the requests a public endpoint gets
 * (malformed, mistyped, oversized, unauthorised, not UTF-8, too long, cut
 * off mid-body, abandoned while waiting) and with clients that trickle their
 * headers and must be cut off. Anything but the expected answer is a failure.
 */
import { connect, type Socket } from 'node:net';

/** A text the served model must embed as given. */
export interface KnownText {
  readonly text: string;
  readonly tokens: number;
  /** The L2-normalised embedding. */
  readonly embedding: readonly number[];
  /** The 16-dimensional Matryoshka embedding. */
  readonly matryoshka16: readonly number[];
}

export interface TrafficOptions {
  readonly url: string;
  readonly apiKey: string;
  readonly seconds: number;
  /** Clients sending requests back to back. @default 24 */
  readonly clients?: number;
  /** Clients trickling their headers at a time, each replaced once cut off. @default 8 */
  readonly slowClients?: number;
  readonly known: readonly KnownText[];
  /** Largest |difference| a vector may have from its known embedding. */
  readonly tolerance: number;
  /** The server's limits, to build requests just past them. */
  readonly limits: { readonly maxRequestTexts: number; readonly maxBodyBytes: number; readonly maxInputTokens: number };
  /** Called every second with what has been done so far. */
  readonly onSecond?: (report: TrafficReport) => void;
}

export interface TrafficReport {
  /** Requests answered, by kind. */
  readonly answered: Record<string, number>;
  /** Latencies of valid requests, in ms. */
  readonly latenciesMs: number[];
  /** Slow clients cut off with 408. */
  slowCutOff: number;
  /** Everything that was not the expected answer. */
  readonly failures: string[];
}

interface Check {
  readonly kind: string;
  run(options: TrafficOptions, pick: () => number): Promise<string | undefined>;
}

/** Runs the traffic for `seconds`; resolves with what happened once every client has stopped. */
export async function runTraffic(options: TrafficOptions): Promise<TrafficReport> {
  const report: TrafficReport = { answered: {}, latenciesMs: [], slowCutOff: 0, failures: [] };
  const end = Date.now() + options.seconds * 1000;
  const pick = mulberry32(20261206);
  const ticker = setInterval(() => options.onSecond?.(report), 1000);
  const fail = (what: string) => {
    if (report.failures.length < 50) report.failures.push(what);
  };

  const client = async () => {
    while (Date.now() < end) {
      // Half the requests valid, half hostile or cut short.
      const kinds = pick() % 2 === 0 ? VALID : HOSTILE;
      const check = kinds[pick() % kinds.length];
      const started = performance.now();
      try {
        const failure = await check.run(options, pick);
        if (failure !== undefined) fail(`${check.kind}: ${failure}`);
      } catch (error) {
        fail(`${check.kind}: ${error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : String(error)}`);
      }
      if (kinds === VALID) report.latenciesMs.push(performance.now() - started);
      report.answered[check.kind] = (report.answered[check.kind] ?? 0) + 1;
    }
  };
  const slowClient = async () => {
    while (Date.now() < end) {
      const answer = await trickleHeaders(options.url, end - Date.now());
      if (answer === 'cut off') report.slowCutOff++;
      else if (answer !== 'time up') fail(`slow client: ${answer}`);
    }
  };
  try {
    await Promise.all([
      ...Array.from({ length: options.clients ?? 24 }, client),
      ...Array.from({ length: options.slowClients ?? 8 }, slowClient),
    ]);
  } finally {
    clearInterval(ticker);
  }
  return report;
}

/**
 * Opens a connection that sends one more header line every 500 ms and never
 * ends its headers: the server must answer 408 and close it within its
 * header timeout. Resolves 'cut off' then, 'time up' if `ms` ran out first,
 * or what went wrong.
 */
export async function trickleHeaders(url: string, ms: number): Promise<string> {
  const client = await rawConnection(url);
  client.socket.write('POST /embed HTTP/1.1\r\nHost: soak\r\n');
  const trickle = setInterval(() => client.socket.writable && client.socket.write('X-Trickle: 1\r\n'), 500);
  const timer = new Promise<'time up'>((resolve) => setTimeout(() => resolve('time up'), ms).unref());
  const outcome = await Promise.race([client.closed.then(() => 'closed' as const), timer]);
  clearInterval(trickle);
  client.socket.destroy();
  if (outcome === 'time up') return outcome;
  return /^HTTP\/1\.1 408 /.test(client.received()) ? 'cut off' : `closed with ${JSON.stringify(client.received().slice(0, 40))}`;
}

/** A raw connection: what it receives, and a promise of its close. */
export async function rawConnection(url: string): Promise<{ socket: Socket; closed: Promise<void>; received: () => string }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (received += d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed, received: () => received };
}

// ---- the requests -------------------------------------------------------

async function send(options: TrafficOptions, path: string, body: string | Uint8Array, headers: Record<string, string> = {}, signal?: AbortSignal) {
  const response = await fetch(`${options.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${options.apiKey}`, ...headers },
    body,
    signal,
  });
  return { status: response.status, text: await response.text() };
}

function someKnown(options: TrafficOptions, pick: () => number): KnownText[] {
  return Array.from({ length: 1 + (pick() % 4) }, () => options.known[pick() % options.known.length]);
}

/** Why `vectors` are not the known ones, or undefined. */
function wrongVectors(vectors: ArrayLike<number>[], expected: (readonly number[])[], tolerance: number): string | undefined {
  if (vectors.length !== expected.length) return `${vectors.length} vectors for ${expected.length} texts`;
  for (let i = 0; i < expected.length; i++) {
    if (vectors[i].length !== expected[i].length) return `vector ${i} has ${vectors[i].length} dimensions, not ${expected[i].length}`;
    for (let j = 0; j < expected[i].length; j++) {
      const diff = Math.abs(vectors[i][j] - expected[i][j]);
      if (!(diff <= tolerance)) return `vector ${i}[${j}] off by ${diff}`;
    }
  }
  return undefined;
}

function expectStatus(kind: string, status: number, expected: number, text: string): string | undefined {
  return status === expected ? undefined : `${kind}: status ${status}, expected ${expected}: ${text.slice(0, 160)}`;
}

/** A request the server must refuse with `status`. */
function refused(kind: string, status: number, request: (options: TrafficOptions) => Promise<{ status: number; text: string }>): Check {
  return { kind, run: async (options) => {
    const answer = await request(options);
    return expectStatus(kind, answer.status, status, answer.text);
  } };
}

const VALID: readonly Check[] = [
  {
    kind: 'valid openai',
    async run(options, pick) {
      const texts = someKnown(options, pick);
      const answer = await send(options, '/v1/embeddings', JSON.stringify({ input: texts.map((t) => t.text) }));
      if (answer.status !== 200) return expectStatus('openai', answer.status, 200, answer.text);
      const body = JSON.parse(answer.text) as { data: { index: number; embedding: number[] }[]; usage: { prompt_tokens: number } };
      const tokens = texts.reduce((sum, t) => sum + t.tokens, 0);
      if (body.usage.prompt_tokens !== tokens) return `usage says ${body.usage.prompt_tokens} tokens, not ${tokens}`;
      if (body.data.some((d, i) => d.index !== i)) return 'indices out of order';
      return wrongVectors(body.data.map((d) => d.embedding), texts.map((t) => t.embedding), options.tolerance);
    },
  },
  {
    kind: 'valid openai base64 dimensions',
    async run(options, pick) {
      const texts = someKnown(options, pick);
      const answer = await send(options, '/v1/embeddings', JSON.stringify({ input: texts.map((t) => t.text), dimensions: 16, encoding_format: 'base64' }));
      if (answer.status !== 200) return expectStatus('openai base64', answer.status, 200, answer.text);
      const body = JSON.parse(answer.text) as { data: { embedding: string }[] };
      const vectors = body.data.map((d) => {
        const bytes = Buffer.from(d.embedding, 'base64');
        return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      });
      return wrongVectors(vectors, texts.map((t) => t.matryoshka16), options.tolerance);
    },
  },
  {
    kind: 'valid tei',
    async run(options, pick) {
      const texts = someKnown(options, pick);
      const one = texts.length === 1 && pick() % 2 === 0;
      const answer = await send(options, '/embed', JSON.stringify({ inputs: one ? texts[0].text : texts.map((t) => t.text) }));
      if (answer.status !== 200) return expectStatus('tei', answer.status, 200, answer.text);
      return wrongVectors(JSON.parse(answer.text) as number[][], texts.map((t) => t.embedding), options.tolerance);
    },
  },
  {
    kind: 'valid ollama',
    async run(options, pick) {
      const texts = someKnown(options, pick);
      const answer = await send(options, '/api/embed', JSON.stringify({ input: texts.map((t) => t.text) }));
      if (answer.status !== 200) return expectStatus('ollama', answer.status, 200, answer.text);
      const body = JSON.parse(answer.text) as { embeddings: number[][]; prompt_eval_count: number };
      return wrongVectors(body.embeddings, texts.map((t) => t.embedding), options.tolerance);
    },
  },
];

const HOSTILE: readonly Check[] = [
  refused('malformed json', 400, (o) => send(o, '/v1/embeddings', '{"input": ["unterminated')),
  refused('wrong type', 400, (o) => send(o, '/embed', JSON.stringify({ inputs: 42 }))),
  refused('texts of the wrong type', 400, (o) => send(o, '/api/embed', JSON.stringify({ input: ['fine', { text: 'no' }] }))),
  refused('empty input', 400, (o) => send(o, '/v1/embeddings', JSON.stringify({ input: [] }))),
  refused('empty text', 400, (o) => send(o, '/embed', JSON.stringify({ inputs: '' }))),
  refused('too many texts', 413, (o) => send(o, '/embed', JSON.stringify({ inputs: Array.from({ length: o.limits.maxRequestTexts + 1 }, () => 'a') }))),
  refused('oversized body', 413, (o) => send(o, '/v1/embeddings', JSON.stringify({ input: 'x'.repeat(o.limits.maxBodyBytes) }))),
  refused('wrong api key', 401, (o) => send(o, '/v1/embeddings', JSON.stringify({ input: 'a' }), { authorization: 'Bearer not-the-key' })),
  refused('no api key', 401, (o) => send(o, '/embed', JSON.stringify({ inputs: 'a' }), { authorization: '' })),
  refused('not utf-8', 400, (o) => send(o, '/embed', Buffer.concat([Buffer.from('{"inputs": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]))),
  // Past the maximum length with truncation refused: TEI answers 413, OpenAI 400.
  refused('text too long (tei)', 413, (o) => send(o, '/embed', JSON.stringify({ inputs: 'word '.repeat(o.limits.maxInputTokens + 10), truncate: false }))),
  refused('text too long (openai)', 400, (o) => send(o, '/v1/embeddings', JSON.stringify({ input: 'word '.repeat(o.limits.maxInputTokens + 10), truncate: false }))),
  refused('unknown model', 404, (o) => send(o, '/v1/embeddings', JSON.stringify({ input: 'a', model: 'text-embedding-3-small' }))),
  {
    kind: 'cut off mid-body',
    async run(options, pick) {
      const client = await rawConnection(options.url);
      const body = JSON.stringify({ input: someKnown(options, pick).map((t) => t.text) });
      client.socket.write(
        `POST /v1/embeddings HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer ${options.apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, body.length >> 1)}`,
      );
      await new Promise((resolve) => setTimeout(resolve, pick() % 20));
      client.socket.destroy();
      return undefined;
    },
  },
  {
    kind: 'abandoned while waiting',
    async run(options, pick) {
      const abort = new AbortController();
      const texts = someKnown(options, pick);
      setTimeout(() => abort.abort(), 1 + (pick() % 15));
      try {
        const answer = await send(options, '/v1/embeddings', JSON.stringify({ input: texts.map((t) => t.text) }), {}, abort.signal);
        // Answered before it was abandoned: then it must be right.
        if (answer.status !== 200) return expectStatus('abandoned', answer.status, 200, answer.text);
        const body = JSON.parse(answer.text) as { data: { embedding: number[] }[] };
        return wrongVectors(body.data.map((d) => d.embedding), texts.map((t) => t.embedding), options.tolerance);
      } catch (error) {
        if ((error as Error).name === 'AbortError') return undefined;
        throw error;
      }
    },
  },
];

/** A small seeded generator of 32-bit integers (mulberry32): the same traffic for the same seed, every bit usable. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The p-th percentile (0–100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Every kind of request the traffic sends, valid and hostile: a run long enough answers each. */
export const TRAFFIC_KINDS: readonly string[] = [...VALID, ...HOSTILE].map((check) => check.kind);
