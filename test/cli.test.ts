import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { readNpy } from '../src/formats/npy.js';
import { quantize, unitVectorRanges } from '../src/pipeline/quantize.js';
import { cosine, expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { startHub } from './helpers/hub-server.js';
import { tempDir } from './helpers/tmp.js';
import { webGpuSuite } from './helpers/webgpu.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist/cli/bin.js');
const MODEL = fixtureDir('nomic-tiny');
const texts = reference('nomic-tiny').texts;
const work = tempDir();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (npm test builds it first). */
function run(args: string[], options: { stdin?: string; env?: Record<string, string>; cwd?: string; command?: string[] } = {}): Promise<Run> {
  const [cmd, ...pre] = options.command ?? [process.execPath, BIN];
  return new Promise((resolve, reject) => {
    // A cache of the test's own: the default model is never looked for in the user's.
    const env = { ...process.env, NOMIC_EMBED_CACHE: join(work, 'cache'), ...options.env };
    const child = spawn(cmd, [...pre, ...args], { cwd: options.cwd ?? work, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

function parseJsonl(stdout: string): Float32Array[] {
  return stdout
    .trim()
    .split('\n')
    .map((line, i) => {
      const record = JSON.parse(line) as { index: number; embedding: number[] };
      expect(record.index).toBe(i);
      return Float32Array.from(record.embedding);
    });
}

describe('nomic-embed command line', () => {
  beforeAll(() => {
    // Texts without newlines, one per line, for the file and stdin inputs.
    writeFileSync(join(work, 'texts.txt'), `${texts.map((t) => t.text.replace(/\n/g, ' ')).join('\n')}\n`);
    writeFileSync(join(work, 'texts.jsonl'), `${texts.map((t) => JSON.stringify({ text: t.text, id: t.name })).join('\n')}\n`);
  });

  it('embeds arguments to JSONL that match the reference', async () => {
    const r = await run(['embed', '--model', MODEL, '--quiet', texts[0].text, texts[1].text]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const vectors = parseJsonl(r.stdout);
    expect(vectors).toHaveLength(2);
    vectors.forEach((v, i) => expectClose(v, texts[i].embedding, TOLERANCE.embedding, texts[i].name));
  });

  it('reads JSONL with a text field and writes .npy', async () => {
    const out = join(work, 'out.npy');
    const r = await run(['embed', '--model', MODEL, '--input', join(work, 'texts.jsonl'), '--output', out, '--dimensions', '32']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/embedded 16 texts .* tokens\/s/);
    const { shape, data, dtype } = readNpy(readFileSync(out));
    expect(shape).toEqual([16, 32]);
    expect(dtype).toBe('<f4');
    texts.forEach((t, i) => expectClose(data.subarray(i * 32, (i + 1) * 32), t.matryoshka['32'], TOLERANCE.embedding, t.name));
  });

  it('writes quantized vectors: integers in JSON Lines, |i1 and |u1 in .npy, calibrated once over all chunks', async () => {
    const jsonl = await run(['embed', '--model', MODEL, '--quiet', '--precision', 'uint8', texts[0].text, texts[1].text]);
    const rows = jsonl.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { embedding: number[] }).embedding);
    const expected = rows.map((_, i) => Array.from(quantize(Float32Array.from(texts[i].embedding), 'uint8', unitVectorRanges(64))));
    // The reference is float64; a code may differ by one where it sits on a step's edge.
    rows.forEach((row, i) => row.forEach((code, d) => expect(Math.abs(code - expected[i][d])).toBeLessThanOrEqual(1)));
    expect(rows.flat().every((x) => Number.isInteger(x) && x >= 0 && x <= 255)).toBe(true);
    const binary = join(work, 'binary.npy');
    expect((await run(['embed', '--model', MODEL, '--quiet', '--input', join(work, 'texts.txt'), '--output', binary, '--precision', 'binary', '--dimensions', '32'])).code).toBe(0);
    const packed = readNpy(readFileSync(binary));
    expect(packed.shape).toEqual([16, 4]);
    expect(packed.dtype).toBe('|i1');
    expect(Array.from(packed.data.subarray(0, 4))).toEqual(Array.from(quantize(Float32Array.from(texts[0].matryoshka['32']), 'binary')));
    writeFileSync(join(work, 'calibration.txt'), `${texts.slice(0, 5).map((t) => t.text.replace(/\n/g, ' ')).join('\n')}\n`);
    const int8 = join(work, 'int8.npy');
    const calibrated = await run(['embed', '--model', MODEL, '--quiet', '--input', join(work, 'texts.txt'), '--output', int8, '--precision', 'int8', '--calibration', join(work, 'calibration.txt')]);
    expect(calibrated.code).toBe(0);
    expect(readNpy(readFileSync(int8))).toMatchObject({ shape: [16, 64], dtype: '|i1' });
  });

  it('searches a float32 index by cosine and a binary one by Hamming distance', async () => {
    const corpus = join(work, 'texts.txt');
    const float = join(work, 'corpus.npy');
    const bits = join(work, 'corpus-bits.npy');
    expect((await run(['embed', '--model', MODEL, '--quiet', '--task', 'search_query', '--input', corpus, '--output', float])).code).toBe(0);
    expect((await run(['embed', '--model', MODEL, '--quiet', '--task', 'search_query', '--input', corpus, '--output', bits, '--precision', 'ubinary'])).code).toBe(0);
    const query = texts[5].text.replace(/\n/g, ' ');
    const r = await run(['search', '--model', MODEL, '--index', float, '--texts', corpus, '--k', '3', '--json', query]);
    expect(r.code).toBe(0);
    const hits = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { rank: number; index: number; score: number; text: string });
    expect(hits).toHaveLength(3);
    // The query is a text of the corpus: it finds itself first.
    expect(hits[0]).toMatchObject({ rank: 1, index: 5, text: query });
    expect(hits[0].score).toBeCloseTo(1, 5);
    expect(hits[1].score).toBeLessThanOrEqual(hits[0].score);
    const b = await run(['search', '--model', MODEL, '--index', bits, '--texts', corpus, '--k', '2', query]);
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/1\. 0 bits {2}\[5\]/);
    const mismatch = await run(['search', '--model', MODEL, '--index', float, '--texts', join(work, 'calibration.txt'), query]);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/holds 5 texts and .* 16 vectors/);
  });

  it('embeds a long text as the mean of its windows', async () => {
    const long = texts.find((t) => t.name === 'long_paragraph')!.text.replace(/\n/g, ' ');
    const r = await run(['embed', '--model', MODEL, '--max-length', '32', '--long-text', 'mean', '--overlap', '4', long]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/embedded 1 texts \(\d+ tokens, 0 truncated\)/);
    const cut = await run(['embed', '--model', MODEL, '--quiet', '--max-length', '32', long]);
    expect(parseJsonl(r.stdout)[0]).not.toEqual(parseJsonl(cut.stdout)[0]);
  });

  it('reads one text per line from stdin, with a task prefix and --no-normalize', async () => {
    const bare = texts.find((t) => t.name === 'query_prefix')!;
    const r = await run(['embed', '--model', MODEL, '--quiet', '--task', 'search_query', '--no-normalize'], {
      stdin: `${bare.text.replace(/^search_query: /, '')}\n`,
    });
    expect(r.code).toBe(0);
    expectClose(parseJsonl(r.stdout)[0], bare.mean_pooled, TOLERANCE.meanPooled, 'stdin text');
  });

  it('streams a file larger than one chunk in order, with progress on request', async () => {
    const lines = Array.from({ length: 2500 }, (_, i) => (i % 2 === 0 ? texts[0].text : texts[4].text));
    writeFileSync(join(work, 'many.txt'), `${lines.join('\n')}\n`);
    const r = await run(['embed', '--model', MODEL, '--input', join(work, 'many.txt'), '--progress']);
    expect(r.code).toBe(0);
    const vectors = parseJsonl(r.stdout);
    expect(vectors).toHaveLength(2500);
    expectClose(vectors[2498], texts[0].embedding, TOLERANCE.embedding, 'line 2499');
    expectClose(vectors[2499], texts[4].embedding, TOLERANCE.embedding, 'line 2500');
    expect(r.stderr).toMatch(/embedding \[#+\.*\] .*texts\/s ETA/);
    expect(r.stderr).toMatch(/embedded 2500 texts/);
  });

  it.each([
    [['embed', '--model', MODEL, '--bogus'], /Unknown option '--bogus'/],
    [['embed', '--model', MODEL, '--dimensions', 'many', 'x'], /--dimensions must be an integer/],
    [['embed', '--model', MODEL, '--dimensions', '100', 'x'], /dimensions: number 100 is not available/],
    [['embed', '--model', MODEL, '--task', 'search', 'x'], /--task must be one of/],
    [['embed', '--model', MODEL, '--format', 'npy', 'x'], /\.npy output needs --output FILE/],
    [['embed', '--model', MODEL, '--input', 'missing.txt'], /--input missing\.txt: no such file/],
    [['embed', '--model', MODEL, '--revision', 'v1', 'x'], /--revision applies to a hub repository id; .* is a folder/],
    [['embed', '--model', 'nosuch', 'x'], /--model nosuch: no such folder, and not a hub repository id/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['convert', MODEL], /convert needs SOURCE_DIR and OUT_DIR/],
    [['convert', MODEL, 'out', '--dtype', 'int4'], /--dtype must be float32, float16, q8; got "int4"/],
    [['embed', '--model', MODEL, '--workers', '0', 'x'], /--workers must be an integer of at least 1/],
  ])('exits 2 with a message for bad arguments: %j', async (args, message) => {
    const r = await run(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it.each(['embed', 'pull', 'convert', 'info', 'serve', 'search'])('%s --help prints its own usage and exits 0', async (command) => {
    for (const flag of ['--help', '-h']) {
      const r = await run([command, flag]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(new RegExp(`^usage: nomic-embed ${command} `));
      expect(r.stdout).toMatch(/--verbose/);
    }
  });

  it('points a bad argument of a command at that command\'s --help', async () => {
    const r = await run(['pull', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/run `nomic-embed pull --help` for the options/);
  });

  it('runs embed on the worker threads asked for', async () => {
    const r = await run(['embed', '--model', MODEL, '--workers', '2', texts[0].text, texts[1].text, texts[2].text]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/embedded 3 texts .* on wasm \(2 workers\)/);
    const vectors = parseJsonl(r.stdout);
    vectors.forEach((v, i) => expectClose(v, texts[i].embedding, TOLERANCE.embedding, texts[i].name));
  });

  it('embeds with int8 products under --dtype q8, and names a bad --dtype', async () => {
    const r = await run(['embed', '--model', MODEL, '--backend', 'wasm', '--dtype', 'q8', texts[0].text, texts[1].text]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/embedded 2 texts .* on wasm in q8 /);
    parseJsonl(r.stdout).forEach((v, i) => expect(cosine(v, texts[i].embedding), texts[i].name).toBeGreaterThan(0.995));
    const bad = await run(['embed', '--model', MODEL, '--dtype', 'fp16', 'hello']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dtype must be fp32 or q8, got "fp16"/);
  });

  it('exits 1 on a broken model, with a stack trace only under --verbose', async () => {
    const r = await run(['embed', '--model', join(work), 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config\.json: file not found/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const verbose = await run(['embed', '--model', join(work), '--verbose', 'x']);
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });

  it('converts, and the converted folder embeds the same', async () => {
    const out = join(work, 'converted');
    const c = await run(['convert', MODEL, out, '--dtype', 'float32']);
    expect(c.code).toBe(0);
    expect(c.stderr).toMatch(/wrote 26 tensors \(float32\)/);
    const r = await run(['embed', '--model', out, '--quiet', texts[3].text]);
    expectClose(parseJsonl(r.stdout)[0], texts[3].embedding, TOLERANCE.embedding, 'converted');
  });

  it('converts to q8, which embeds with --dtype q8', async () => {
    const out = join(work, 'converted-q8');
    const c = await run(['convert', MODEL, out, '--dtype', 'q8']);
    expect(c.code).toBe(0);
    expect(c.stderr).toMatch(/wrote 26 tensors \(q8\)/);
    const r = await run(['embed', '--model', out, '--dtype', 'q8', '--quiet', texts[3].text]);
    expect(r.code).toBe(0);
    expect(cosine(Float32Array.from(parseJsonl(r.stdout)[0]), Float32Array.from(texts[3].embedding))).toBeGreaterThan(0.995);
  });

  it('npm run convert -- runs the same conversion', async () => {
    const out = join(work, 'converted-npm');
    const r = await run(['run', '--silent', 'convert', '--', MODEL, out, '--dtype', 'float16'], { command: ['npm'], cwd: ROOT });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/wrote 26 tensors \(float16\)/);
  });

  it('info prints backend, config, parameters and a memory estimate', async () => {
    const r = await run(['info', '--model', MODEL, '--backend', 'wasm', '--batch', '4', '--length', '128']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backend: wasm/);
    expect(r.stdout).toMatch(/2 layers, hidden 64, 4 heads/);
    expect(r.stdout).toMatch(/parameters: 2,085,632/);
    expect(r.stdout).toMatch(/memory for a batch of 4 × 128 tokens: /);
  });

  it('with no --model and nothing cached, offline mode says what is missing', async () => {
    for (const [args, env] of [
      [['embed', 'x'], { HF_HUB_OFFLINE: '1' }],
      [['embed', '--offline', 'x'], {}],
    ] as const) {
      const r = await run([...args], { env: { ...env, NOMIC_EMBED_CACHE: tempDir() } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/nomic-ai\/nomic-embed-text-v1\.5 \(revision main\) is not in the cache, and offline mode/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('with no --model, the first run downloads the default model into the cache and the next makes no request', async () => {
    const hub = await startHub(MODEL, ['config.json', 'tokenizer.json', 'model.safetensors']);
    const env = { HF_ENDPOINT: hub.endpoint, NOMIC_EMBED_CACHE: tempDir() };
    try {
      const first = await run(['embed', texts[0].text], { env });
      expect(first.code).toBe(0);
      expect(first.stderr).toMatch(/model\.safetensors: downloaded and verified/);
      expectClose(parseJsonl(first.stdout)[0], texts[0].embedding, TOLERANCE.embedding, 'downloaded model');
      const requests = hub.requests.length;
      const second = await run(['embed', '--quiet', texts[0].text], { env: { ...env } });
      expect(second.code).toBe(0);
      expect(hub.requests.length).toBe(requests);
      expectClose(parseJsonl(second.stdout)[0], texts[0].embedding, TOLERANCE.embedding, 'cached model');
    } finally {
      await hub.close();
    }
  });

  it('two processes starting at once share one download', async () => {
    // The weights arrive slowly, so the second process finds the first one's download under way.
    const hub = await startHub(MODEL, ['config.json', 'tokenizer.json', 'model.safetensors'], { delay: { 'model.safetensors': 2000 } });
    const env = { HF_ENDPOINT: hub.endpoint, NOMIC_EMBED_CACHE: tempDir() };
    try {
      const runs = await Promise.all([run(['embed', texts[0].text], { env }), run(['embed', texts[1].text], { env })]);
      runs.forEach((r, i) => {
        expect(r.code, r.stderr).toBe(0);
        expectClose(parseJsonl(r.stdout)[0], texts[i].embedding, TOLERANCE.embedding, `process ${i}`);
      });
      expect(hub.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/cdn/'))).toHaveLength(1);
      expect(runs.filter((r) => /another process is downloading it; waiting/.test(r.stderr))).toHaveLength(1);
    } finally {
      await hub.close();
    }
  });

  it('pull downloads into the cache, or with --weights-dir into a folder of its own', async () => {
    const hub = await startHub(MODEL, ['config.json', 'tokenizer.json', 'model.safetensors']);
    const cache = tempDir();
    try {
      const p = await run(['pull'], { env: { HF_ENDPOINT: hub.endpoint, NOMIC_EMBED_CACHE: cache } });
      expect(p.code).toBe(0);
      expect(p.stdout.trim()).toBe(join(cache, 'nomic-ai--nomic-embed-text-v1.5', 'main'));
      expect(p.stderr).toMatch(/model\.safetensors: downloaded and verified/);
      const w = await run(['pull', '--weights-dir', 'weights'], { env: { HF_ENDPOINT: hub.endpoint } });
      expect(w.code).toBe(0);
      expect(w.stdout.trim()).toBe('weights/nomic-embed-text-v1.5');
      const r = await run(['embed', '--quiet', '--model', 'weights/nomic-embed-text-v1.5', texts[0].text]);
      expect(r.code).toBe(0);
      expectClose(parseJsonl(r.stdout)[0], texts[0].embedding, TOLERANCE.embedding, 'pulled model');
    } finally {
      await hub.close();
    }
  });
});

const gpu = await webGpuSuite();
gpu.describe('nomic-embed on webgpu', () => {
  it('info reports the adapter and its buffer limits', async () => {
    const r = await run(['info', '--model', MODEL, '--backend', 'webgpu']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backend: webgpu/);
    expect(r.stdout).toMatch(new RegExp(`adapter: ${gpu.adapter!.vendor}, .*\\((software|hardware)\\)`));
    expect(r.stdout).toMatch(/adapter limits: maxBufferSize .*, maxStorageBufferBindingSize \d/);
  });

  it('embeds like the reference and exits when done', async () => {
    const r = await run(['embed', '--model', MODEL, '--backend', 'webgpu', texts[0].text, texts[4].text]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/on webgpu \(1 worker\)/);
    const vectors = parseJsonl(r.stdout);
    expectClose(vectors[0], texts[0].embedding, TOLERANCE.embedding, texts[0].name);
    expectClose(vectors[1], texts[4].embedding, TOLERANCE.embedding, texts[4].name);
  });
});
