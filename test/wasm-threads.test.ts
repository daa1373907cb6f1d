import * as tf from '@tensorflow/tfjs-core';
import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { allocateInWasmHeap, packForXnnpack, wasmHeapSlots } from '../src/backends/wasm-heap.js';
import { xnnpackPacker } from '../src/backends/xnnpack-packer.js';
import { ResidentMemory } from '../src/backends/resident-memory.js';
import { threadsFailure } from '../src/backends/wasm-threads.js';
import { MIN_CHUNK_WORK, productGrid, ROWS_PER_CHUNK } from '../src/backends/q8/q8-threads.js';
import { productChunksOnHelpers } from '../src/backends/q8/wasm-q8.js';
import { q8MatMulReference, quantizeWeight } from '../src/weights/q8-codes.js';
import { placeInWasmHeap, placeQ8Codes } from '../src/backends/q8/wasm-q8.js';
import { codeWords, packedWords, project } from '../src/model/projection.js';
import { packF32Weight } from '../src/backends/q8/q8-packer.js';
import { f32MatMulReference } from './helpers/products.js';
import { NonFiniteWeightError } from '../src/errors.js';
import { loadModel, loadModelConcurrently } from '../src/model/load-model.js';
import { convertWeights } from '../src/weights/convert.js';
import { SafetensorsFile } from '../src/weights/safetensors.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import type { BlockWeights } from '../src/model/block.js';
import type { WeightPacker } from '../src/model/build-model.js';
import type { EncoderInputs, ForwardOptions, NomicBertModel } from '../src/model/nomic-bert.js';
import { runBatchJob, warmUpJob } from '../src/pipeline/batch-job.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { tempDir } from './helpers/tmp.js';

const exec = promisify(execFile);
const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const cores = availableParallelism();

describe('the threaded WebAssembly build', () => {
  const embedders = new Map<string, Embedder>();
  beforeAll(async () => {
    // The first wasm start in this process: it decides the build and threads for the process.
    for (const fixture of FIXTURE_NAMES) embedders.set(fixture, await loadEmbedder(fixtureDir(fixture), { backend: 'wasm' }));
  });
  afterAll(async () => {
    for (const e of embedders.values()) await e.dispose();
  });

  it('starts in Node with a thread per core, one model in this thread', () => {
    expect(threadsFailure()).toBeUndefined();
    const embedder = embedders.get('nomic-tiny')!;
    expect(embedder.threads).toBe(cores);
    expect(embedder.workers).toBe(1);
    expect(() => embedder.model).not.toThrow();
  });

  // Enough rows for several chunks per thread, the last one short; and one short query, whose columns are cut instead, the last chunk short again.
  // Products of a few hundred microseconds, so that the helpers have woken before the calling thread has claimed every chunk.
  const splits: [string, number, number, number][] = [
    ['rows', ROWS_PER_CHUNK * 4 * cores + 5, 1024, 48],
    ['columns', 5, 1024, Math.ceil(MIN_CHUNK_WORK / (5 * 1024) / 8) * 8 * 4 * cores + 8],
  ];

  /** x and −x: both kernels' products of −x are exactly the negated products of x, and an output chunk left over from the round before has the wrong sign. */
  const signedInputs = (x: Float32Array, M: number, K: number) => [tf.tensor2d(x, [M, K]), tf.tensor2d(x.map((v) => -v), [M, K])];

  /** Rounds until the helpers have taken part (which thread takes which chunk differs from one round to the next), each bit for bit. */
  const expectSharedRounds = (product: (input: tf.Tensor2D) => tf.Tensor2D, inputs: tf.Tensor2D[], expected: Float32Array) => {
    const before = productChunksOnHelpers();
    for (let round = 0; round < 200 && productChunksOnHelpers() === before; round++) {
      const sign = round % 2 === 0 ? 1 : -1;
      const result = product(inputs[round % 2]);
      const actual = result.dataSync();
      result.dispose();
      expect([...actual].findIndex((v, i) => v !== sign * expected[i])).toBe(-1);
    }
    expect(productChunksOnHelpers()).toBeGreaterThan(before);
  };

  it.each(splits)('cuts a %s product into chunks for its threads', (_, M, K, N) => {
    expect(productGrid(M, K, N, cores).chunks).toBeGreaterThanOrEqual(cores);
  });

  it.each(splits)('splits a q8 product over its threads by %s, with the single-threaded result bit for bit', (_, M, K, N) => {
    const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37) * 4);
    const w = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11) * 0.05);
    const weight = quantizeWeight(w, K, N);
    const codes = placeQ8Codes(K, N, (target) => target.set(weight.codes));
    const scales = tf.tensor1d(weight.scales);
    const inputs = signedInputs(x, M, K);
    try {
      const expected = q8MatMulReference(x, M, K, weight, N);
      expectSharedRounds((input) => project(input, { codes, scales, inner: K }), inputs, expected);
    } finally {
      tf.dispose([codes, scales, ...inputs]);
    }
  });

  it.each(splits)('splits a float32 product of our kernel over its threads by %s, bit for bit', (_, M, K, N) => {
    const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37) * 4);
    const w = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11) * 0.05);
    const packed = placeInWasmHeap(packedWords(K, N), (bytes) => packF32Weight(w, K, N, new Float32Array(bytes.buffer, bytes.byteOffset, K * N)));
    const inputs = signedInputs(x, M, K);
    try {
      const expected = f32MatMulReference(x, M, K, w, N);
      expectSharedRounds((input) => project(input, { packed, inner: K, columns: N }), inputs, expected);
    } finally {
      tf.dispose([packed, ...inputs]);
    }
  });

  it('holds float32 projections packed for our kernel only, by default', async () => {
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm' });
    try {
      const { layers } = embedder.model as unknown as { layers: BlockWeights[] };
      const { q, down } = { q: layers[0].attention.q, down: layers[1].mlp.down } as unknown as Record<string, { packed?: tf.Tensor; inner: number; columns: number }>;
      expect(q.packed?.size).toBe(packedWords(64, 64));
      expect([down.inner, down.columns]).toEqual([256, 64]);
    } finally {
      await embedder.dispose();
    }
  });

  it('finishes every one of many small shared products, by rows and by columns', { timeout: 60_000 }, () => {
    // A helper that answers between the caller's check and its wait must still wake it: a lost wake-up hangs here.
    const [K, N] = [64, 64 * cores + 8];
    const weight = quantizeWeight(Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11) * 0.05), K, N);
    const codes = placeQ8Codes(K, N, (target) => target.set(weight.codes));
    const scales = tf.tensor1d(weight.scales);
    try {
      for (const M of [5, 16 * cores]) {
        const input = tf.tensor2d(Float32Array.from({ length: M * K }, (_, i) => Math.sin(i)), [M, K]);
        const first = project(input, { codes, scales, inner: K });
        const expected = first.dataSync();
        first.dispose();
        for (let i = 0; i < 10_000; i++) project(input, { codes, scales, inner: K }).dispose();
        const last = project(input, { codes, scales, inner: K });
        expect(last.dataSync()).toEqual(expected);
        tf.dispose([last, input]);
      }
    } finally {
      tf.dispose([codes, scales]);
    }
  });

  it('starts only the pthread workers its threads need', () => {
    // Emscripten's generated start-up would load the module into 8 workers whatever the thread count.
    const { PThread } = (tf.backend() as unknown as { wasm: { PThread: { unusedWorkers: unknown[]; runningWorkers: unknown[] } } }).wasm;
    expect(PThread.unusedWorkers.length + PThread.runningWorkers.length).toBe(cores);
  });

  for (const fixture of FIXTURE_NAMES) {
    it(`matches the upstream model on ${fixture}, alone and batched alike`, async () => {
      const texts = reference(fixture).texts;
      const embedder = embedders.get(fixture)!;
      const batched = await embedder.embed(texts.map((t) => t.text));
      texts.forEach((t, i) => expectClose(batched.embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      for (const [i, t] of texts.entries()) {
        expectClose((await embedder.embed([t.text])).embeddings[0], batched.embeddings[i], 1e-6, `${t.name} alone`);
      }
      for (const dims of reference(fixture).pooling.matryoshka_dims) {
        const { embeddings } = await embedder.embed(texts.map((t) => t.text), { dimensions: dims });
        texts.forEach((t, i) => expectClose(embeddings[i], t.matryoshka[String(dims)], TOLERANCE.embedding, `${t.name} matryoshka[${dims}]`));
      }
    });
  }

  it('keeps no tensor, backs off when a batch fails to grow the heap, and its threads go on working', async () => {
    const embedder = embedders.get('nomic-tiny')!;
    const texts = reference('nomic-tiny').texts;
    const forward = embedder.model.forward.bind(embedder.model);
    await embedder.embed(texts.slice(0, 2).map((t) => t.text));
    const before = tf.memory().numTensors;
    try {
      // The failure comes after a real forward pass, so the thread pool is mid-use when it happens.
      embedder.model.forward = (inputs: EncoderInputs, options?: ForwardOptions) => {
        const hidden = forward(inputs, options);
        if (inputs.inputIds.shape[0] <= 2) return hidden;
        hidden.dispose();
        throw new Error('Aborted(Cannot enlarge memory arrays to size 4294967296 bytes (OOM))');
      };
      const { embeddings, stats } = await embedder.embed(texts.map((t) => t.text), { maxBatchSize: 8 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.retries).toBeGreaterThan(0);
    } finally {
      embedder.model.forward = forward;
    }
    expect(tf.memory().numTensors).toBe(before);
    const again = await embedder.embed(texts.map((t) => t.text));
    texts.forEach((t, i) => expectClose(again.embeddings[i], t.embedding, TOLERANCE.embedding, `${t.name} after`));
  });

  describe('loading a converted checkpoint, every read in flight at once', () => {
    const work = tempDir();
    const converted = join(work, 'converted');
    beforeAll(() => void convertWeights(fixtureDir('nomic-tiny'), converted, { dtype: 'float32' }));
    afterEach(() => vi.restoreAllMocks());

    /**
     * The default packer, recording each projection's shape and the memory it
     * was read into; with `keepStaging` its staging buffers stay allocated
     * after the load, until `finish` is called.
     */
    const recordingPacker = (wasmVersion?: string, keepStaging = false) => {
      const packer = xnnpackPacker(wasmVersion);
      const shapes: number[][] = [];
      const targets: Float32Array[] = [];
      const recording: WeightPacker = {
        pack: (shape, fill, checkFinite) => {
          shapes.push([...shape]);
          return packer.pack(shape, (target) => (targets.push(target), fill(target)), checkFinite);
        },
        packSync: (shape, fill) => {
          shapes.push([...shape]);
          return packer.packSync(shape, (target) => (targets.push(target), fill(target)));
        },
        finish: () => (keepStaging ? undefined : packer.finish()),
      };
      return { packer: recording, shapes, targets, finish: () => packer.finish() };
    };
    const someTokens = () => ({ ...warmUpJob('per-head'), sequences: [Int32Array.from({ length: 9 }, (_, i) => 2000 + 37 * i)], length: 9, queryBlock: 9 });
    const memoryOffset = (t: tf.Tensor) => (tf.backend() as unknown as { getMemoryOffset(dataId: object): number }).getMemoryOffset(t.dataId);
    const projectionsOf = (model: NomicBertModel) =>
      (model as unknown as { layers: BlockWeights[] }).layers.flatMap(({ attention: a, mlp: m }) => [a.q, a.k, a.v, a.out, m.up, m.gate, m.down] as tf.Tensor[]);

    it("takes a q8 checkpoint's codes as they are, and embeds as quantizing at load does", async () => {
      const q8 = join(work, 'q8');
      convertWeights(fixtureDir('nomic-tiny'), q8, { dtype: 'q8' });
      const codeReads = vi.spyOn(SafetensorsFile.prototype, 'readInt8Into');
      const [fromCodes, fromFloats] = [await loadEmbedder(q8, { backend: 'wasm', dtype: 'q8' }), await loadEmbedder(converted, { backend: 'wasm', dtype: 'q8' })];
      try {
        // q, k, v, out, up, gate and down of both layers.
        expect(codeReads).toHaveBeenCalledTimes(14);
        const texts = reference('nomic-tiny').texts.map((t) => t.text);
        const [a, b] = [(await fromCodes.embed(texts)).embeddings, (await fromFloats.embed(texts)).embeddings];
        a.forEach((v, i) => expect(v, texts[i]).toEqual(b[i]));
      } finally {
        await fromCodes.dispose();
        await fromFloats.dispose();
      }
    });

    it('reads on I/O threads, packs every projection as it arrives, and matches the upstream model', async () => {
      const asyncReads = vi.spyOn(SafetensorsFile.prototype, 'readFloat32IntoAsync');
      const { packer, shapes } = recordingPacker();
      const model = await loadModelConcurrently(converted, {}, wasmHeapSlots()!, packer);
      model.dispose();
      expect(asyncReads).toHaveBeenCalledTimes(4 + 11 * 2);
      // q, k, v, out, up, gate and down of both layers; never the embeddings or norms.
      expect(shapes.sort()).toEqual([...Array(8).fill([64, 64]), ...Array(4).fill([64, 256]), ...Array(2).fill([256, 64])].sort());
      const embedder = await loadEmbedder(converted, { backend: 'wasm' });
      try {
        const texts = reference('nomic-tiny').texts;
        const { embeddings } = await embedder.embed(texts.map((t) => t.text));
        texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      } finally {
        await embedder.dispose();
      }
    });

    it('packs each projection into the block an I/O thread made resident for it while it was read', async () => {
      const allocate = vi.spyOn(ResidentMemory.prototype, 'allocate');
      const [K, N] = [512, 2048];
      const weights = [1, 2, 3].map((seed) => Float32Array.from({ length: K * N }, (_, i) => Math.sin(seed * 1e4 + i)));
      const packer = xnnpackPacker();
      const before = tf.memory().numTensors;
      const packed = await Promise.all(weights.map((w) => packer.pack([K, N], async (target) => target.set(w), () => {})));
      packer.finish();
      const blocks = await Promise.all(allocate.mock.results.map((r) => r.value as Promise<number>));
      expect(blocks).toHaveLength(3);
      const heap = new Float32Array((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer);
      // XNNPACK's copy holds column tiles of a bias (zero here) and then the weight row after row, so the
      // first values of row 0 follow each other near its start: each weight's in the block made for it.
      const holders = weights.map((w) =>
        blocks.findIndex((pointer) => {
          const start = heap.subarray(pointer >> 2, (pointer >> 2) + 64);
          return start.some((_, i) => i + 4 <= start.length && [0, 1, 2, 3].every((j) => start[i + j] === w[j]));
        }),
      );
      expect(holders).toEqual([0, 1, 2]);
      for (const t of packed) (t as tf.Tensor).dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('checks a large weight by one product, and the loader looks for the bad value only when it says so', async () => {
      const slots = wasmHeapSlots()!;
      const before = tf.memory().numTensors;
      const small = [slots([64]), slots([2, 64])];
      expect(small.map((s) => s.allFinite)).toEqual([undefined, undefined]);
      const [R, C] = [4096, 32];
      const slot = slots([R, C]);
      slot.target.set(Float32Array.from({ length: R * C }, (_, i) => Math.sin(i)));
      expect(slot.allFinite!()).toBe(true);
      for (const bad of [NaN, Infinity, -Infinity]) {
        slot.target[R * C - 5] = bad;
        expect(slot.allFinite!(), String(bad)).toBe(false);
        slot.target[R * C - 5] = 0.5;
      }
      // Finite values whose row sum overflows: not all finite as far as it can tell, and the loader looks itself.
      slot.target.fill(3e38, 0, C);
      expect(slot.allFinite!()).toBe(false);
      for (const s of [...small, slot]) s.tensor.dispose();
      expect(tf.memory().numTensors).toBe(before);

      const checked: number[][] = [];
      const recording = (shape: readonly number[]) => {
        const made = slots(shape);
        return made.allFinite === undefined ? made : { ...made, allFinite: () => (checked.push([...shape]), made.allFinite!()) };
      };
      const model = await loadModelConcurrently(converted, {}, recording, xnnpackPacker());
      model.dispose();
      // The word embeddings, [padded vocabulary, 64]; the token-type embeddings and norms are too small.
      expect(checked).toEqual([[30528, 64]]);
    });

    const loaders = {
      'read concurrently': (packer: WeightPacker, dir = converted) => loadModelConcurrently(dir, {}, wasmHeapSlots()!, packer),
      'read one weight after another': async (packer: WeightPacker, dir = converted) => loadModel(dir, {}, allocateInWasmHeap, packer),
    };
    it.each(Object.keys(loaders) as (keyof typeof loaders)[])('keeps only the packed copy of each projection, %s: products never read the memory a weight was read into', async (how) => {
      const load = loaders[how];
      const before = tf.memory().numTensors;
      const keptCopies = await load(recordingPacker('another release').packer);
      const expected = await runBatchJob(keptCopies, someTokens());
      expect(projectionsOf(keptCopies).every((w) => memoryOffset(w) !== 0)).toBe(true);
      keptCopies.dispose();

      const { packer, shapes, targets, finish } = recordingPacker(undefined, true);
      const packedOnly = await load(packer);
      expect(shapes).toHaveLength(14);
      expect(projectionsOf(packedOnly).map(memoryOffset)).toEqual(Array(14).fill(0));
      // Every weight was read into the staging buffers, kept for this test: poisoned, any product reading them turns NaN.
      for (const target of targets) target.fill(NaN);
      const { vectors } = await runBatchJob(packedOnly, someTokens());
      expect(Array.from(vectors)).toEqual(Array.from(expected.vectors));
      finish();
      packedOnly.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it.each(Object.keys(loaders) as (keyof typeof loaders)[])('says so when the heap cannot lend a staging buffer, %s, and frees what it made', async (how) => {
      const { wasm } = tf.backend() as unknown as { wasm: { _malloc(bytes: number): number } };
      const malloc = wasm._malloc;
      const before = tf.memory().numTensors;
      // The up and gate projections of the tiny model, [64, 256] floats.
      wasm._malloc = (bytes) => (bytes === 64 * 256 * 4 ? 0 : malloc(bytes));
      try {
        await expect(loaders[how](xnnpackPacker())).rejects.toThrow(/backend "wasm": its heap could not lend 65536 bytes to stage a weight/);
      } finally {
        wasm._malloc = malloc;
      }
      expect(tf.memory().numTensors).toBe(before);
      const model = await loaders[how](xnnpackPacker());
      expect(Array.from((await runBatchJob(model, someTokens())).vectors).every(Number.isFinite)).toBe(true);
      model.dispose();
    });

    const poison = (tensor: string, index: number, value: number) => {
      const file = openSafetensors(join(converted, 'model.safetensors'));
      const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: file.readFloat32(t.name) }));
      const { metadata } = file;
      file.close();
      const poisoned = join(work, `poisoned-${tensor}-${index}-${value}`);
      mkdirSync(poisoned);
      for (const name of ['config.json', 'tokenizer.json']) copyFileSync(join(converted, name), join(poisoned, name));
      tensors.find((t) => t.name === tensor)!.data[index] = value;
      writeSafetensors(join(poisoned, 'model.safetensors'), tensors, metadata);
      return poisoned;
    };

    // A projection's values are checked by the product that packs it; the other weights by a pass of their own.
    it.each([
      ['layers.1.mlp.gate', 300, NaN],
      ['layers.0.attn.q', 0, Infinity],
      ['layers.1.mlp.down', 256 * 64 - 1, -Infinity],
      ['embeddings.word', 1000, NaN],
      ['layers.0.norm2.bias', 63, Infinity],
    ])('names a non-finite weight (%s[%i] = %f) and frees every tensor it made', async (tensor, index, value) => {
      const poisoned = poison(tensor, index, value);
      const before = tf.memory().numTensors;
      for (const wasmVersion of [undefined, 'another release']) {
        for (const load of Object.values(loaders)) {
          const failure = await load(recordingPacker(wasmVersion).packer, poisoned).catch((error: unknown) => error);
          expect(failure).toBeInstanceOf(NonFiniteWeightError);
          expect(failure).toMatchObject({ tensor, index, value });
          expect(tf.memory().numTensors).toBe(before);
        }
      }
      await expect(loadEmbedder(poisoned, { backend: 'wasm' })).rejects.toThrow(`"${tensor}" holds ${value} at flat index ${index}`);
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  it('packs a projection and tells whether its values are all finite, from the one product', () => {
    const [rows, columns] = [64, 256];
    const finite = tf.randomNormal([rows, columns]) as tf.Tensor2D;
    expect(packForXnnpack(finite)).toBe(true);
    finite.dispose();
    for (const value of [NaN, Infinity, -Infinity]) {
      for (const index of [0, columns - 1, (rows - 1) * columns, rows * columns - 1, 37 * columns + 129]) {
        const data = new Float32Array(rows * columns).fill(0.5);
        data[index] = value;
        const weight = tf.tensor2d(data, [rows, columns]);
        expect(packForXnnpack(weight), `${value} at ${index}`).toBe(false);
        weight.dispose();
      }
    }
  });

  it('combines with workers: each worker runs the threaded build', async () => {
    const texts = reference('nomic-tiny').texts;
    const pooled = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 2, threads: 2 });
    try {
      expect(pooled.workers).toBe(2);
      expect(pooled.threads).toBe(2);
      const { embeddings } = await pooled.embed(texts.map((t) => t.text), { maxBatchSize: 4 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    } finally {
      await pooled.dispose();
    }
  });
});

describe('where threads cannot start', () => {
  // Without SharedArrayBuffer the threaded build cannot run; V8's flag takes it away.
  const withoutThreads = (args: string[]) => exec(process.execPath, ['--no-harmony-sharedarraybuffer', BIN, ...args], { maxBuffer: 1 << 24 });

  it('nomic-embed info says so and why', async () => {
    const { stdout } = await withoutThreads(['info', '--model', fixtureDir('nomic-tiny'), '--backend', 'wasm']);
    expect(stdout).toMatch(/wasm: single-threaded build \(SharedArrayBuffer is not available in this JavaScript runtime\); embed and serve use one worker thread per core instead/);
  });

  it('embedding falls back to the worker pool, with the same vectors', async () => {
    const texts = reference('nomic-tiny').texts.slice(0, 3);
    const { stdout, stderr } = await withoutThreads(['embed', '--model', fixtureDir('nomic-tiny'), '--backend', 'wasm', ...texts.map((t) => t.text)]);
    expect(stderr).toMatch(/on wasm \(\d+ workers?\)/);
    const vectors = stdout.trim().split('\n').map((line) => (JSON.parse(line) as { embedding: number[] }).embedding);
    texts.forEach((t, i) => expectClose(vectors[i], t.embedding, TOLERANCE.embedding, t.name));
  });
});
