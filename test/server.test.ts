import * as tf from '@tensorflow/tfjs-core';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import type { EmbedOptions } from '../src/pipeline/embed-options.js';
import type { BatchJob } from '../src/pipeline/batch-job.js';
import { serve, type EmbeddingServer, type ServeOptions } from '../src/server/serve.js';
import { expectClose, fixtureDir, reference } from './helpers/fixtures.js';

const texts = reference('nomic-tiny').texts.map((t) => t.text).filter((t) => t.length > 0);
/** The server finishes vectors in float64 JavaScript, the library in float32 tensors. */
const SAME = 1e-6;

let embedder: Embedder;
beforeAll(async () => {
  embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1 });
});
afterAll(() => embedder.dispose());

async function post(server: EmbeddingServer, path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

async function library(input: string[], options: EmbedOptions = {}) {
  return (await embedder.embed(input, options)).embeddings;
}

function expectVectors(actual: number[][], expected: Float32Array[], what: string) {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((v, i) => expectClose(v, expected[i], SAME, `${what}[${i}]`));
}

/** Holds every forward batch until released, to keep requests in flight or queued on purpose. */
function stallBatches(target: Embedder) {
  const run = target.runner.run.bind(target.runner);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const started: number[] = [];
  target.runner.run = async (job: BatchJob) => {
    started.push(job.sequences.length);
    await gate;
    return run(job);
  };
  return { started, release: () => (release(), (target.runner.run = run)) };
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function metric(server: EmbeddingServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** A raw client that sends what it is given and records what comes back and when it was closed. */
async function rawClient(server: EmbeddingServer, send = '') {
  const { port } = new URL(server.url);
  const socket: Socket = connect(Number(port), '127.0.0.1');
  let received = '';
  socket.on('data', (d) => (received += d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  if (send !== '') socket.write(send);
  return { socket, closed, isClosed: () => isClosed, received: () => received };
}

const SLOW_HEADERS = 'POST /embed HTTP/1.1\r\nHost: x\r\n';
const SLOW_BODY = 'POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inp';

describe('the embedding server', () => {
  let server: EmbeddingServer;
  const start = (options: ServeOptions = {}) => serve(embedder, { port: 0, ...options });
  beforeAll(async () => {
    server = await start();
  });
  afterAll(() => server.close());

  it('answers the OpenAI API as the library embeds, with real token counts', async () => {
    const input = texts.slice(0, 5);
    const { status, body } = await post(server, '/v1/embeddings', { input, model: 'nomic-tiny', task: 'search_query', dimensions: 32 });
    expect(status).toBe(200);
    expect(body).toMatchObject({ object: 'list', model: 'nomic-tiny' });
    expect(body.data.map((d: any) => [d.object, d.index])).toEqual(input.map((_, i) => ['embedding', i]));
    expectVectors(body.data.map((d: any) => d.embedding), await library(input, { task: 'search_query', dimensions: 32 }), 'openai');
    const { stats } = await embedder.embed(input, { task: 'search_query' });
    expect(body.usage).toEqual({ prompt_tokens: stats.tokens, total_tokens: stats.tokens });
    const single = await post(server, '/v1/embeddings', { input: texts[0], normalize: false });
    expectVectors([single.body.data[0].embedding], await library([texts[0]], { normalize: false }), 'openai raw');
  });

  it('sends base64 as OpenAI does: little-endian float32', async () => {
    const { body } = await post(server, '/v1/embeddings', { input: texts.slice(0, 2), encoding_format: 'base64' });
    const decoded = body.data.map((d: any) => {
      const bytes = Buffer.from(d.embedding, 'base64');
      return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
    });
    expectVectors(decoded, await library(texts.slice(0, 2)), 'base64');
  });

  it('serves the official openai client, float and base64', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
    const input = texts.slice(0, 3);
    const expected = await library(input);
    const asFloat = await client.embeddings.create({ model: 'nomic-tiny', input, encoding_format: 'float' });
    expectVectors(asFloat.data.map((d) => d.embedding), expected, 'openai client float');
    // The client asks for base64 by default and decodes it itself.
    const byDefault = await client.embeddings.create({ model: 'nomic-tiny', input });
    expectVectors(byDefault.data.map((d) => d.embedding), expected, 'openai client base64');
    const shorter = await client.embeddings.create({ model: 'nomic-tiny', input, dimensions: 16 });
    expectVectors(shorter.data.map((d) => d.embedding), await library(input, { dimensions: 16 }), 'openai client dimensions');
  });

  it('answers the TEI API as the library embeds', async () => {
    const input = texts.slice(2, 6);
    const normalized = await post(server, '/embed', { inputs: input, prompt_name: 'search_document' });
    expect(normalized.status).toBe(200);
    expectVectors(normalized.body, await library(input, { task: 'search_document' }), 'tei');
    const raw = await post(server, '/embed', { inputs: input[0], normalize: false });
    expectVectors(raw.body, await library([input[0]], { normalize: false }), 'tei raw');
    const cut = await post(server, '/embed', { inputs: input, dimensions: 16 });
    expectVectors(cut.body, await library(input, { dimensions: 16 }), 'tei dimensions');
  });

  it('answers the Ollama API as the library embeds', async () => {
    const input = texts.slice(1, 4);
    const { status, body } = await post(server, '/api/embed', { model: 'nomic-tiny:latest', input, dimensions: 32 });
    expect(status).toBe(200);
    expect(body.model).toBe('nomic-tiny:latest');
    expectVectors(body.embeddings, await library(input, { dimensions: 32 }), 'ollama');
    expect(body.prompt_eval_count).toBe((await embedder.embed(input)).stats.tokens);
    expect(body.total_duration).toBeGreaterThan(0);
    expect(body.load_duration).toBe(0);
  });

  it('quantizes on request, as the library does, in every API', async () => {
    const input = texts.slice(0, 3);
    const binary = (await embedder.embed(input, { precision: 'binary', dimensions: 32 })).embeddings.map((v) => Array.from(v));
    const openai = await post(server, '/v1/embeddings', { input, precision: 'binary', dimensions: 32 });
    expect(openai.body.data.map((d: any) => d.embedding)).toEqual(binary);
    const bytes = await post(server, '/v1/embeddings', { input, precision: 'binary', dimensions: 32, encoding_format: 'base64' });
    expect(bytes.body.data.map((d: any) => Array.from(new Int8Array(Buffer.from(d.embedding, 'base64'))))).toEqual(binary);
    const uint8 = (await embedder.embed(input, { precision: 'uint8' })).embeddings.map((v) => Array.from(v));
    expect((await post(server, '/embed', { inputs: input, precision: 'uint8' })).body).toEqual(uint8);
    expect((await post(server, '/api/embed', { input, precision: 'uint8' })).body.embeddings).toEqual(uint8);
    const refused = await post(server, '/embed', { inputs: input, precision: 'int8', normalize: false });
    expect(refused.status).toBe(400);
    expect((await post(server, '/embed', { inputs: input, precision: 'int4' })).body.error).toMatch(/unknown precision "int4"/);
  });

  it.each([
    ['OpenAI', '/v1/embeddings', 'input', (e: any) => e.error.message],
    ['TEI', '/embed', 'inputs', (e: any) => e.error],
    ['Ollama', '/api/embed', 'input', (e: any) => e.error],
  ])('rejects bad input on the %s API with 400 and a message naming it', async (_, path, field, message) => {
    const cases: [object, RegExp][] = [
      [{ [field]: [] }, /is empty/],
      [{ [field]: ['fine', 7] }, /\[1\] must be a string, got number/],
      [{ [field]: ['fine', ''] }, /input\[1\] is an empty string/],
      [{ [field]: [101, 7592, 102] }, /token ids/],
      [{ [field]: [[101, 102]] }, /token ids/],
      [{ [field]: 'x', dimensions: 100 }, /dimensions: number 100 is not available/],
      [{ [field]: 'x', [path === '/embed' ? 'prompt_name' : 'task']: 'search' }, /unknown task "search"/],
      [{}, new RegExp(field)],
    ];
    for (const [body, pattern] of cases) {
      const response = await post(server, path, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(message(response.body), JSON.stringify(body)).toMatch(pattern);
    }
  });

  it('answers malformed JSON with 400, and the next request normally', async () => {
    const bad = await post(server, '/v1/embeddings', '{"input": ["unterminated');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/not valid JSON/);
    expect((await post(server, '/v1/embeddings', { input: 'fine' })).status).toBe(200);
  });

  it('refuses a body that is not valid UTF-8 with 400 naming the byte, rather than embedding replacement characters', async () => {
    // "é" is C3 A9; the euro sign E2 82 AC: a lone C3 before a quote, and a cut E2 82, are not UTF-8.
    const cases: [Buffer, number][] = [
      [Buffer.concat([Buffer.from('{"inputs": "caf'), Buffer.from([0xc3]), Buffer.from('"}')]), 15],
      [Buffer.concat([Buffer.from('{"inputs": "\u00e9 '), Buffer.from([0xc3, 0xa9, 0xe2, 0x82]), Buffer.from('x"}')]), 17],
      [Buffer.concat([Buffer.from('{"inputs": "'), Buffer.from([0xff]), Buffer.from('"}')]), 12],
    ];
    for (const [body, at] of cases) {
      const response = await fetch(`${server.url}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toBe(`the request body is not valid UTF-8 (from byte ${at})`);
    }
    const valid = Buffer.from('{"inputs": "café €"}');
    expect((await fetch(`${server.url}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: valid })).status).toBe(200);
  });

  it('names a model it does not serve, as each API does', async () => {
    const openai = await post(server, '/v1/embeddings', { input: 'x', model: 'text-embedding-3-small' });
    expect(openai.status).toBe(404);
    expect(openai.body.error).toMatchObject({ code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
    const ollama = await post(server, '/api/embed', { input: 'x', model: 'all-minilm' });
    expect(ollama.status).toBe(404);
    expect(ollama.body.error).toMatch(/model "all-minilm" not found/);
  });

  it('refuses a text over the maximum length unless told to truncate, as each API does', async () => {
    const small = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, maxLength: 16 });
    const strict = await serve(small, { port: 0 });
    try {
      const long = reference('nomic-tiny').texts.find((t) => t.name === 'long_paragraph')!.text;
      const openai = await post(strict, '/v1/embeddings', { input: long });
      expect(openai.status).toBe(400);
      expect(openai.body.error.code).toBe('context_length_exceeded');
      expect((await post(strict, '/v1/embeddings', { input: long, truncate: true })).status).toBe(200);
      const tei = await post(strict, '/embed', { inputs: long });
      expect(tei.status).toBe(413);
      expect(tei.body.error_type).toBe('validation');
      expect((await post(strict, '/embed', { inputs: long, truncate: true })).status).toBe(200);
      // Ollama truncates unless told not to.
      expect((await post(strict, '/api/embed', { input: long })).status).toBe(200);
      expect((await post(strict, '/api/embed', { input: long, truncate: false })).status).toBe(400);
    } finally {
      await strict.close();
      await small.dispose();
    }
  });

  it('merges 100 concurrent requests of mixed sizes and options into fewer batches, each answer right', async () => {
    const before = await metric(server, 'nomic_embed_batches_total');
    const requests = Array.from({ length: 100 }, (_, i) => {
      const input = Array.from({ length: 1 + (i % 7) }, (_, j) => texts[(i * 3 + j) % texts.length]);
      const options = [{}, { dimensions: 32 }, { normalize: false }, { task: 'clustering' }][i % 4] as EmbedOptions;
      return { input, options };
    });
    const answers = await Promise.all(requests.map(({ input, options }) => post(server, '/v1/embeddings', { input, ...options })));
    // Read before the library calls below, which run on the same embedder's queue and so count too.
    const batches = (await metric(server, 'nomic_embed_batches_total')) - before;
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(100);
    for (const [i, { input, options }] of requests.entries()) {
      expect(answers[i].status).toBe(200);
      expectVectors(answers[i].body.data.map((d: any) => d.embedding), await library(input, options), `request ${i}`);
    }
  });

  it('answers 429 with Retry-After when the queue is full, and recovers', async () => {
    const tight = await start({ maxQueueTokens: 60, batchWaitMs: 0 });
    const stall = stallBatches(embedder);
    try {
      const running = post(tight, '/v1/embeddings', { input: 'the first request runs' });
      await until(() => stall.started.length === 1, 'the first batch');
      // The second waits in the queue (about 40 tokens of 60); the third does not fit beside it.
      const queued = post(tight, '/v1/embeddings', { input: texts.slice(0, 4) });
      await until(async () => (await metric(tight, 'nomic_embed_queue_tokens')) > 0, 'the queued request');
      const refused = await post(tight, '/v1/embeddings', { input: texts.slice(0, 4) });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.error.code).toBe('rate_limit_exceeded');
      const tooBig = await post(tight, '/v1/embeddings', { input: texts });
      expect(tooBig.status).toBe(413);
      stall.release();
      expect((await running).status).toBe(200);
      expect((await queued).status).toBe(200);
      expect((await post(tight, '/v1/embeddings', { input: texts.slice(0, 4) })).status).toBe(200);
    } finally {
      stall.release();
      await tight.close();
    }
  });

  it('drops the queued texts of a client that went away before they are computed', async () => {
    const stall = stallBatches(embedder);
    try {
      const first = post(server, '/v1/embeddings', { input: 'keeps the model busy' });
      await until(() => stall.started.length === 1, 'the first batch');
      const body = JSON.stringify({ input: texts.slice(0, 6) });
      const gone = httpRequest(`${server.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
      gone.on('error', () => undefined);
      gone.end(body);
      await until(async () => (await metric(server, 'nomic_embed_queue_texts')) === 6, 'the queued texts');
      gone.destroy();
      await until(async () => (await metric(server, 'nomic_embed_queue_texts')) === 0, 'the queue to drop them');
      stall.release();
      expect((await first).status).toBe(200);
      expect(stall.started).toEqual([1]);
    } finally {
      stall.release();
    }
  });

  it('enforces an API key on every route but /health, in constant-time comparison', async () => {
    const locked = await start({ apiKey: 'sesame' });
    try {
      const none = await post(locked, '/v1/embeddings', { input: 'x' });
      expect(none.status).toBe(401);
      expect(none.body.error.code).toBe('invalid_api_key');
      expect((await post(locked, '/embed', { inputs: 'x' }, { authorization: 'Bearer sesam' })).status).toBe(401);
      expect((await post(locked, '/embed', { inputs: 'x' }, { authorization: 'Bearer sesame' })).status).toBe(200);
      expect((await fetch(`${locked.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${locked.url}/health`)).status).toBe(200);
      const client = new OpenAI({ baseURL: `${locked.url}/v1`, apiKey: 'sesame' });
      expect((await client.embeddings.create({ model: 'nomic-tiny', input: 'x' })).data).toHaveLength(1);
    } finally {
      await locked.close();
    }
  });

  it('limits the body size and the texts per request with 413 naming the limit', async () => {
    const limited = await start({ maxBodyBytes: 2000, maxRequestTexts: 3 });
    try {
      const big = await post(limited, '/embed', { inputs: 'x'.repeat(3000) });
      expect(big.status).toBe(413);
      const many = await post(limited, '/v1/embeddings', { input: ['a', 'b', 'c', 'd'] });
      expect(many.status).toBe(413);
      expect(many.body.error.message).toMatch(/4 texts, more than the limit of 3 per request/);
    } finally {
      await limited.close();
    }
  });

  it('reports health, info and Prometheus metrics', async () => {
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'serving' });
    const info = (await (await fetch(`${server.url}/info`)).json()) as any;
    expect(info).toMatchObject({ model: 'nomic-tiny', dimensions: 64, max_input_length: 8192, backend: 'wasm', version: '0.1.0' });
    expect(info.limits).toMatchObject({ max_batch_tokens: 2048, max_queue_tokens: 16 * 2048, max_request_texts: 2048 });
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of [
      'nomic_embed_requests_total{route="/v1/embeddings",status="200"}',
      'nomic_embed_request_duration_seconds_bucket',
      'nomic_embed_queue_texts',
      'nomic_embed_queue_tokens',
      'nomic_embed_batch_size_bucket',
      'nomic_embed_batch_padding_ratio_bucket',
      'nomic_embed_tokens_total',
      'nomic_embed_backend_info{backend="wasm",device="wasm"} 1',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('sends CORS headers only when told to', async () => {
    const preflight = (url: string) =>
      fetch(`${url}/v1/embeddings`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    expect((await preflight(server.url)).headers.get('access-control-allow-origin')).toBeNull();
    const open = await start({ cors: 'https://app.example' });
    try {
      expect((await preflight(open.url)).headers.get('access-control-allow-origin')).toBe('https://app.example');
    } finally {
      await open.close();
    }
  });

  it('answers 503 while the model loads, then serves', async () => {
    let finish!: (e: Embedder) => void;
    const loading = await serve(new Promise<Embedder>((resolve) => (finish = resolve)), { port: 0 });
    try {
      expect((await fetch(`${loading.url}/health`)).status).toBe(503);
      const early = await post(loading, '/v1/embeddings', { input: 'x' });
      expect(early.status).toBe(503);
      expect(early.body.error.message).toMatch(/still loading/);
      finish(embedder);
      await loading.ready;
      expect((await fetch(`${loading.url}/health`)).status).toBe(200);
      expect((await post(loading, '/v1/embeddings', { input: 'x' })).status).toBe(200);
    } finally {
      await loading.close();
    }
  });

  it('lets a request in flight finish when closed, and turns away new ones', async () => {
    const closing = await start();
    const stall = stallBatches(embedder);
    try {
      const inFlight = post(closing, '/v1/embeddings', { input: texts.slice(0, 2) });
      await until(() => stall.started.length === 1, 'the batch');
      const closed = closing.close(10_000);
      expect(closing.state).toBe('draining');
      await expect(fetch(`${closing.url}/health`)).rejects.toThrow();
      stall.release();
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expectVectors(answer.body.data.map((d: any) => d.embedding), await library(texts.slice(0, 2)), 'in flight at close');
      await closed;
      expect(closing.state).toBe('closed');
    } finally {
      stall.release();
    }
  });

  it('cuts off clients whose headers or body come too slowly with 408, serving others meanwhile', async () => {
    const strict = await start({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    try {
      const slowHeaders = await rawClient(strict, SLOW_HEADERS);
      const slowBody = await rawClient(strict, SLOW_BODY);
      const silent = await rawClient(strict);
      const served = await post(strict, '/v1/embeddings', { input: texts.slice(0, 2) });
      expect(served.status).toBe(200);
      expectVectors(served.body.data.map((d: any) => d.embedding), await library(texts.slice(0, 2)), 'beside slow clients');
      expect(slowHeaders.isClosed() || slowBody.isClosed() || silent.isClosed()).toBe(false);
      // Each keeps its connection open until its timeout, then Node answers 408 and closes it.
      slowHeaders.socket.write('X-Trickle: 1\r\n');
      slowBody.socket.write('uts"');
      await Promise.all([slowHeaders.closed, slowBody.closed, silent.closed]);
      for (const client of [slowHeaders, slowBody, silent]) expect(client.received()).toMatch(/^HTTP\/1\.1 408 /);
      expect(await metric(strict, 'nomic_embed_timed_out_requests_total')).toBe(3);
      expect((await post(strict, '/embed', { inputs: 'after' })).status).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it('refuses connections beyond maxConnections as they arrive, and accepts again once one closes', async () => {
    const few = await start({ maxConnections: 3 });
    try {
      const held = await Promise.all([1, 2, 3].map(() => rawClient(few, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')));
      await until(() => held.every((c) => c.received().includes('\r\n\r\n')), 'three kept-alive connections');
      const extra = await rawClient(few, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      await extra.closed;
      expect(extra.received()).toBe('');
      held[0].socket.destroy();
      await held[0].closed;
      // The server may see the close a moment after the client: connections refused meanwhile are counted too.
      let refusedMeanwhile = 0;
      let metrics = '';
      await until(async () => {
        const client = await rawClient(few, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        await client.closed;
        if (client.received() === '') refusedMeanwhile++;
        metrics = client.received();
        return metrics.startsWith('HTTP/1.1 200 ');
      }, 'a free connection');
      expect(Number(/^nomic_embed_refused_connections_total (\S+)$/m.exec(metrics)?.[1])).toBe(1 + refusedMeanwhile);
      expect(Number(/^nomic_embed_open_connections (\S+)$/m.exec(metrics)?.[1])).toBe(3);
    } finally {
      await few.close();
    }
  });

  it('drains at once: closes idle and incomplete connections, answers the request whose body arrived, then closes', async () => {
    const draining = await start();
    const stall = stallBatches(embedder);
    try {
      const idle = await rawClient(draining, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => idle.received().includes('\r\n\r\n'), 'the idle connection');
      const slowHeaders = await rawClient(draining, SLOW_HEADERS);
      const slowBody = await rawClient(draining, SLOW_BODY);
      const inFlight = post(draining, '/v1/embeddings', { input: texts.slice(0, 3) });
      await until(() => stall.started.length === 1, 'the batch');
      // The grace period is far longer than the test may take: the drain must not wait for it.
      const closed = draining.close(600_000);
      await Promise.all([idle.closed, slowHeaders.closed, slowBody.closed]);
      expect(draining.state).toBe('draining');
      stall.release();
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expect(answer.headers.get('connection')).toBe('close');
      expectVectors(answer.body.data.map((d: any) => d.embedding), await library(texts.slice(0, 3)), 'answered while draining');
      await closed;
      expect(draining.state).toBe('closed');
    } finally {
      stall.release();
    }
  });

  it('keeps no tensor after all of this', async () => {
    const before = tf.memory().numTensors;
    await Promise.all(Array.from({ length: 20 }, (_, i) => post(server, '/embed', { inputs: texts.slice(0, 1 + (i % 4)), dimensions: 16 })));
    await post(server, '/embed', { inputs: ['fine', 3] });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses unknown serve options by name', async () => {
    await expect(serve(embedder, { prot: 1 } as ServeOptions)).rejects.toThrow(/unknown option "prot"/);
    await expect(serve(embedder, { maxConnections: 0 })).rejects.toThrow(/maxConnections/);
    await expect(serve(embedder, { headersTimeoutMs: 5000, requestTimeoutMs: 1000 })).rejects.toThrow(/headersTimeoutMs: 5000 is longer than requestTimeoutMs/);
  });
});
