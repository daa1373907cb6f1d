import * as tf from '@tensorflow/tfjs-core';
import { chmodSync, copyFileSync, mkdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allocateInWasmHeap } from '../src/backends/wasm-heap.js';
import { NonFiniteWeightError } from '../src/errors.js';
import { loadModel } from '../src/model/load-model.js';
import { runtimeLayoutFile } from '../src/weights/layout-cache.js';
import { CONVERTED_FORMAT_VERSION } from '../src/weights/load.js';
import { readConfig } from '../src/weights/model-folder.js';
import { openSafetensors, writeSafetensors } from '../src/weights/safetensors-file.js';
import { useBackend } from './helpers/backend.js';
import { fixtureDir, reference } from './helpers/fixtures.js';
import { expectParity } from './helpers/parity.js';
import { tempDir } from './helpers/tmp.js';

const root = tempDir();
let counter = 0;
function copyOfFixture(): string {
  const dir = join(root, `model-${counter++}`);
  mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'model.safetensors']) copyFileSync(join(fixtureDir('nomic-tiny'), f), join(dir, f));
  return dir;
}

describe('the runtime-layout copy of a Hugging Face checkpoint', () => {
  beforeAll(() => useBackend('wasm'));
  const config = readConfig(fixtureDir('nomic-tiny'));

  it('is made once, stamped with its source, loads to the same model, and is reused', async () => {
    const dir = copyOfFixture();
    const notices: string[] = [];
    // Any size counts here; by default only checkpoints of 64 MiB or more get a copy.
    const cache = runtimeLayoutFile(join(dir, 'model.safetensors'), config, (m) => notices.push(m), 0);
    expect(cache).toBe(join(dir, 'model.runtime.safetensors'));
    expect(notices).toEqual([expect.stringMatching(/converting .*model\.safetensors to the runtime layout once; later loads read .*model\.runtime\.safetensors/)]);
    const file = openSafetensors(cache);
    const source = statSync(join(dir, 'model.safetensors'));
    expect(file.metadata).toMatchObject({
      format: 'nomic-embed-tfjs',
      format_version: CONVERTED_FORMAT_VERSION,
      dtype: 'F32',
      source_bytes: String(source.size),
      source_mtime_ms: String(Math.trunc(source.mtimeMs)),
    });
    file.close();
    const written = statSync(cache).mtimeMs;
    expect(runtimeLayoutFile(join(dir, 'model.safetensors'), config, (m) => notices.push(m), 0)).toBe(cache);
    expect(notices).toHaveLength(1);
    expect(statSync(cache).mtimeMs).toBe(written);
    // The model loads from the copy, straight into the wasm heap, and matches the reference.
    const model = loadModel(dir, { weightsFile: 'model.runtime.safetensors' }, allocateInWasmHeap);
    try {
      const ref = reference('nomic-tiny');
      for (const text of ref.texts.slice(0, 4)) await expectParity(model, ref, text);
    } finally {
      model.dispose();
    }
  });

  it('is made again when its source changes', () => {
    const dir = copyOfFixture();
    const path = join(dir, 'model.safetensors');
    const notices: string[] = [];
    runtimeLayoutFile(path, config, (m) => notices.push(m), 0);
    utimesSync(path, new Date(), new Date(Date.now() + 60_000));
    runtimeLayoutFile(path, config, (m) => notices.push(m), 0);
    expect(notices).toHaveLength(2);
    expect(openSafetensors(join(dir, 'model.runtime.safetensors')).metadata.source_mtime_ms).toBe(String(Math.trunc(statSync(path).mtimeMs)));
  });

  it('is skipped, with a notice, where the folder is not writable, and for small checkpoints', () => {
    const dir = copyOfFixture();
    const path = join(dir, 'model.safetensors');
    expect(runtimeLayoutFile(path, config)).toBe(path);
    chmodSync(dir, 0o555);
    try {
      const notices: string[] = [];
      const chosen = runtimeLayoutFile(path, config, (m) => notices.push(m), 0);
      // Root ignores directory permissions: then the copy is simply made.
      if (process.getuid?.() === 0) expect(chosen).toBe(join(dir, 'model.runtime.safetensors'));
      else {
        expect(chosen).toBe(path);
        expect(notices.at(-1)).toMatch(/could not write .* loading .*model\.safetensors as it is/);
      }
    } finally {
      chmodSync(dir, 0o755);
    }
  });
});

describe('loading straight into the wasm heap', () => {
  beforeAll(() => useBackend('wasm'));

  it('names a NaN weight and leaves no tensor behind', () => {
    const dir = copyOfFixture();
    const file = openSafetensors(join(fixtureDir('nomic-tiny'), 'model.safetensors'));
    const tensors = [...file.tensors.values()].map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: file.readFloat32(t.name) }));
    file.close();
    tensors.find((t) => t.name === 'encoder.layers.1.mlp.fc2.weight')!.data[17] = Number.POSITIVE_INFINITY;
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    const before = tf.memory().numTensors;
    const error = (() => {
      try {
        loadModel(dir, { layoutCache: false }, allocateInWasmHeap);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(NonFiniteWeightError);
    expect(error).toMatchObject({ tensor: 'encoder.layers.1.mlp.fc2.weight', index: 17, value: Number.POSITIVE_INFINITY });
    expect(tf.memory().numTensors).toBe(before);
  });
});
