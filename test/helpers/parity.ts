import * as tf from '@tensorflow/tfjs-core';
import type { NomicBertModel } from '../../src/model/nomic-bert.js';
import { finishVector } from '../../src/pipeline/finish-vector.js';
import { pool } from '../../src/pipeline/pooling.js';
import { expectClose, TOLERANCE, type Reference, type ReferenceText } from './fixtures.js';

/**
 * Runs one text alone through the model, as the reference did, and reads every
 * output back asynchronously (WebGPU in Node has no synchronous read).
 */
export async function runAlone(model: NomicBertModel, text: ReferenceText, dims: number[]) {
  const outputs = tf.tidy(() => {
    const shape: [number, number] = [1, text.num_tokens];
    const attentionMask = tf.tensor2d(text.attention_mask, shape, 'float32');
    const hidden = model.forward({
      inputIds: tf.tensor2d(text.input_ids, shape, 'int32'),
      attentionMask,
      tokenTypeIds: tf.tensor2d(text.token_type_ids, shape, 'int32'),
      lengths: [text.num_tokens],
    });
    const pooled = pool(hidden, attentionMask, 'mean');
    return [hidden, pooled];
  });
  const [hidden, pooled] = (await Promise.all(outputs.map((t) => t.data()))) as Float32Array[];
  tf.dispose(outputs);
  const D = pooled.length;
  return {
    hidden,
    pooled,
    embedding: finishVector(pooled, { dimensions: D, matryoshka: false, normalize: true }),
    matryoshka: dims.map((d) => finishVector(pooled, { dimensions: d, matryoshka: true, normalize: true })),
  };
}

/** Every output of one text against the reference, at the fixtures' tolerances. */
export async function expectParity(model: NomicBertModel, reference: Reference, text: ReferenceText): Promise<void> {
  const dims = reference.pooling.matryoshka_dims;
  const out = await runAlone(model, text, dims);
  if (text.last_hidden_state !== undefined) {
    expectClose(out.hidden, text.last_hidden_state.flat(), TOLERANCE.lastHiddenState, `${text.name} last_hidden_state`);
  }
  expectClose(out.pooled, text.mean_pooled, TOLERANCE.meanPooled, `${text.name} mean_pooled`);
  expectClose(out.embedding, text.embedding, TOLERANCE.embedding, `${text.name} embedding`);
  dims.forEach((d, i) => expectClose(out.matryoshka[i], text.matryoshka[String(d)], TOLERANCE.embedding, `${text.name} matryoshka[${d}]`));
}
