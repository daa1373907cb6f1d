import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { selectBackend } from '../src/backends/select.js';
import { webGpuAdapter } from '../src/backends/webgpu/device.js';
import { Embedder, loadEmbedder } from '../src/embedder.js';
import { ConfigError, OutOfMemoryError } from '../src/errors.js';
import { FUSED_ATTENTION, RESIDUAL_LAYER_NORM, SWIGLU } from '../src/model/fused-ops.js';
import { loadModel } from '../src/model/load-model.js';
import type { EncoderInputs, ForwardOptions } from '../src/model/nomic-bert.js';
import { estimateMemory } from '../src/pipeline/memory.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { mostInFlight } from './helpers/in-flight.js';
import { expectParity } from './helpers/parity.js';
import { webGpuSuite } from './helpers/webgpu.js';

const suite = await webGpuSuite();
/** Float32 rounding differences between a padded batch and a lone text stay far below this. */
const BATCH_TOLERANCE = 1e-6;

suite.describe('the webgpu backend', () => {
  beforeAll(async () => {
    // auto never takes a software adapter; by name, webgpu takes whatever adapter there is.
    const picked = await selectBackend('auto');
    if (suite.adapter!.software) expect(picked).not.toBe('webgpu');
    expect(await selectBackend('webgpu')).toBe('webgpu');
  });

  it('reports its adapter and the limits that bound tensor sizes', () => {
    const adapter = webGpuAdapter()!;
    expect(adapter).toMatchObject({ vendor: suite.adapter!.vendor, software: suite.adapter!.software });
    expect(adapter.description.length).toBeGreaterThan(0);
    expect(adapter.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(adapter.maxBufferSize).toBeGreaterThanOrEqual(adapter.maxStorageBufferBindingSize);
  });

  for (const fixture of FIXTURE_NAMES) {
    const ref = reference(fixture);
    it(`matches the upstream model at the fixtures' tolerances on ${fixture}`, async () => {
      const model = loadModel(fixtureDir(fixture));
      try {
        for (const text of ref.texts) await expectParity(model, ref, text);
      } finally {
        model.dispose();
      }
    });
  }

  for (const fixture of FIXTURE_NAMES) {
    it(`embeds texts alone and in any batch alike, through the fused kernels, on ${fixture}`, async () => {
      const texts = reference(fixture).texts;
      const embedder = await loadEmbedder(fixtureDir(fixture), { backend: 'webgpu' });
      try {
        expect(embedder.attention).toBe('fused');
        const alone: Float32Array[] = [];
        for (const t of texts) alone.push((await embedder.embed([t.text])).embeddings[0]);
        texts.forEach((t, i) => expectClose(alone[i], t.embedding, TOLERANCE.embedding, t.name));
        const order = texts.map((_, i) => i).reverse();
        let kernels: string[] = [];
        const profile = await tf.profile(async () => {
          const { embeddings } = await embedder.embed(order.map((i) => texts[i].text), { maxBatchSize: 1000, maxBatchTokens: 1e6 });
          order.forEach((textIndex, row) => expectClose(embeddings[row], alone[textIndex], BATCH_TOLERANCE, `${texts[textIndex].name} in a batch`));
        });
        kernels = profile.kernelNames;
        expect(kernels).toContain(FUSED_ATTENTION);
        expect(kernels).toContain(RESIDUAL_LAYER_NORM);
        expect(kernels).toContain(SWIGLU);
        // Attention's softmax and transposes, rotary's halves, layer norms' means and SwiGLU's sigmoid all ran inside the fused kernels.
        for (const gone of ['Softmax', 'Concat', 'Mean', 'Sigmoid']) expect(kernels).not.toContain(gone);
      } finally {
        await embedder.dispose();
      }
    });
  }

  it('refuses dtype q8 with a ConfigError that says where q8 runs, before loading any weight', async () => {
    const before = tf.memory().numTensors;
    const failure = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'webgpu', dtype: 'q8' }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ConfigError);
    expect((failure as Error).message).toMatch(/"dtype" = "q8": not on the webgpu backend: .*wasm and cpu/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps two batches in flight, each text getting its own vector', async () => {
    const texts = reference('nomic-tiny').texts;
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'webgpu' });
    try {
      let result: Awaited<ReturnType<Embedder['embed']>> | undefined;
      const most = await mostInFlight(embedder.runner, async () => (result = await embedder.embed(texts.map((t) => t.text), { maxBatchSize: 1 })));
      const { embeddings, stats } = result!;
      expect(stats.batches).toBe(texts.length);
      expect(most).toBe(2);
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
    } finally {
      await embedder.dispose();
    }
  });

  it('keeps no tensor after embed, nor after a failed batch, and backs off on a GPU out-of-memory error', async () => {
    const texts = reference('nomic-tiny').texts;
    const embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'webgpu' });
    const forward = embedder.model.forward.bind(embedder.model);
    try {
      await embedder.embed(texts.slice(0, 2).map((t) => t.text));
      const before = tf.memory().numTensors;
      await embedder.embed(texts.map((t) => t.text), { dimensions: 32 });
      expect(tf.memory().numTensors).toBe(before);
      // A batch that fails after allocating, as a real failure would; WebGPU's message for it.
      embedder.model.forward = (inputs: EncoderInputs, options?: ForwardOptions) => {
        const partial = tf.ones([inputs.inputIds.shape[0], 64]);
        if (inputs.inputIds.shape[0] > 2) throw new Error('WebGPU out of memory: Allocation failed');
        partial.dispose();
        return forward(inputs, options);
      };
      const { embeddings, stats } = await embedder.embed(texts.map((t) => t.text), { maxBatchSize: 8 });
      texts.forEach((t, i) => expectClose(embeddings[i], t.embedding, TOLERANCE.embedding, t.name));
      expect(stats.retries).toBeGreaterThan(0);
      expect(tf.memory().numTensors).toBe(before);
      embedder.model.forward = () => {
        throw new Error('WebGPU out of memory: Allocation failed');
      };
      await expect(embedder.embed([texts[0].text])).rejects.toBeInstanceOf(OutOfMemoryError);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      embedder.model.forward = forward;
      await embedder.dispose();
    }
  });

  it('predicts the fused forward pass\'s peak memory within 10%', async () => {
    const model = loadModel(fixtureDir('nomic-tiny'));
    try {
      for (const [B, T] of [[1, 8], [4, 64], [2, 256], [1, 1024]]) {
        const base = tf.memory().numBytes;
        let out: tf.Tensor | undefined;
        const profile = await tf.profile(() => {
          out = tf.tidy(() => {
            const inputIds = tf.randomUniform([B, T], 0, 30000, 'int32', 7) as tf.Tensor2D;
            const attentionMask = tf.concat([tf.ones([B, T - 3]), tf.zeros([B, 3])], 1) as tf.Tensor2D;
            return model.forward({ inputIds, attentionMask, lengths: new Array<number>(B).fill(T - 3) });
          });
        });
        await out!.data();
        out!.dispose();
        const ratio = estimateMemory(model.config, B, T, { attention: 'fused' }).activationBytes / (profile.peakBytes - base);
        expect(ratio, `B=${B}, T=${T}`).toBeGreaterThan(0.97);
        expect(ratio, `B=${B}, T=${T}`).toBeLessThan(1.1);
      }
    } finally {
      model.dispose();
    }
  });

  it('embeds an 8192-token text as the wasm backend does, in memory linear in its length', async () => {
    const paragraph = reference('nomic-tiny-ntk').texts.find((t) => t.name === 'long_paragraph')!.text;
    const long = `${paragraph} `.repeat(30);
    const onGpu = await loadEmbedder(fixtureDir('nomic-tiny-ntk'), { backend: 'webgpu' });
    let gpu: Awaited<ReturnType<Embedder['embed']>>;
    try {
      gpu = await onGpu.embed([long]);
    } finally {
      await onGpu.dispose();
    }
    expect(gpu.stats.tokens).toBe(8192);
    // Batched scores alone would be 2 × 4 heads × 8192² floats: 2 GiB. The fused kernel holds none of them.
    expect(gpu.stats.measuredPeakBytes).toBeLessThan(64 * 1024 * 1024);
    const onWasm = await loadEmbedder(fixtureDir('nomic-tiny-ntk'), { backend: 'wasm', workers: 1 });
    try {
      const wasm = await onWasm.embed([long]);
      expectClose(gpu.embeddings[0], wasm.embeddings[0], TOLERANCE.embedding, '8192 tokens, webgpu vs wasm');
    } finally {
      await onWasm.dispose();
      await selectBackend('webgpu');
    }
  });
});
