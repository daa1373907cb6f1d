import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { loadModel } from '../src/model/load-model.js';
import type { NomicBertModel } from '../src/model/nomic-bert.js';
import { matryoshka } from '../src/pipeline/matryoshka.js';
import { l2Normalize } from '../src/pipeline/normalize.js';
import { pool } from '../src/pipeline/pooling.js';
import { PORTABLE_BACKENDS, useBackend } from './helpers/backend.js';
import { expectClose, FIXTURE_NAMES, fixtureDir, reference, TOLERANCE, type ReferenceText } from './helpers/fixtures.js';

/** Runs one text alone through the model, as the reference did, and reads every output back. */
function runAlone(model: NomicBertModel, text: ReferenceText, dims: number[]) {
  return tf.tidy(() => {
    const shape: [number, number] = [1, text.num_tokens];
    const attentionMask = tf.tensor2d(text.attention_mask, shape, 'int32');
    const hidden = model.forward({
      inputIds: tf.tensor2d(text.input_ids, shape, 'int32'),
      attentionMask,
      tokenTypeIds: tf.tensor2d(text.token_type_ids, shape, 'int32'),
    });
    const pooled = pool(hidden, attentionMask, 'mean');
    return {
      hidden: hidden.dataSync(),
      pooled: pooled.dataSync(),
      embedding: l2Normalize(pooled).dataSync(),
      matryoshka: dims.map((d) => matryoshka(pooled, d).dataSync()),
    };
  });
}

describe.each(PORTABLE_BACKENDS)('parity with the upstream model on the %s backend', (backend) => {
  describe.each(FIXTURE_NAMES)('%s', (fixture) => {
    let model: NomicBertModel;
    const ref = reference(fixture);
    const dims = ref.pooling.matryoshka_dims;

    beforeAll(async () => {
      await useBackend(backend);
      model = loadModel(fixtureDir(fixture));
    });
    afterAll(() => model.dispose());

    it.each(ref.texts.map((t) => [t.name, t] as const))('%s', (name, text) => {
      const out = runAlone(model, text, dims);
      if (text.last_hidden_state !== undefined) {
        expectClose(out.hidden, text.last_hidden_state.flat(), TOLERANCE.lastHiddenState, `${name} last_hidden_state`);
      }
      expectClose(out.pooled, text.mean_pooled, TOLERANCE.meanPooled, `${name} mean_pooled`);
      expectClose(out.embedding, text.embedding, TOLERANCE.embedding, `${name} embedding`);
      dims.forEach((d, i) => {
        expectClose(out.matryoshka[i], text.matryoshka[String(d)], TOLERANCE.embedding, `${name} matryoshka[${d}]`);
      });
    });
  });
});
