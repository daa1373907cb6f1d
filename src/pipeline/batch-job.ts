import * as tf from '@tensorflow/tfjs-core';
import type { AttentionKernel } from '../model/attention.js';
import { takePeakMemory } from '../model/memory-watermark.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import { matryoshka } from './matryoshka.js';
import { l2Normalize } from './normalize.js';
import { pool, type Pooling } from './pooling.js';
import { toEncoderInputs } from './tensors.js';
import { checkShape } from './validate.js';

/** How pooled vectors become outputs; plain data, so it crosses to worker threads. */
export interface OutputSpec {
  readonly pooling: Pooling;
  /** Output size; the hidden size unless Matryoshka truncation was asked for. */
  readonly dimensions: number;
  /** Apply Nomic's Matryoshka recipe (layer norm, truncate, L2) rather than plain L2. */
  readonly matryoshka: boolean;
  readonly normalize: boolean;
}

/** One batch of work: right-padded to `length`, run as one forward pass. */
export interface BatchJob {
  readonly sequences: readonly Int32Array[];
  readonly length: number;
  readonly queryBlock: number;
  readonly attention: AttentionKernel;
  readonly output: OutputSpec;
}

export interface BatchOutput {
  /** [B, dimensions] row-major. */
  readonly vectors: Float32Array;
  /** The backend's tensor memory peak during the batch, weights included. */
  readonly measuredPeakBytes: number;
}

/**
 * Tokens to vectors for one batch: tensor conversion, transformer, pooling,
 * output step, with the dimension validator between stages. Every tensor is
 * freed before it returns, also when a stage throws.
 */
export async function runBatchJob(model: NomicBertModel, job: BatchJob): Promise<BatchOutput> {
  const B = job.sequences.length;
  const T = job.length;
  const D = model.config.n_embd;
  const { output } = job;
  takePeakMemory();
  const result = tf.tidy(() => {
    const inputs = toEncoderInputs(job.sequences);
    checkShape('tensor conversion: input_ids', inputs.inputIds.shape, [B, T]);
    checkShape('tensor conversion: attention_mask', inputs.attentionMask.shape, [B, T]);
    const hidden = model.forward(inputs, { queryBlock: job.queryBlock, attention: job.attention });
    checkShape('transformer: last_hidden_state', hidden.shape, [B, T, D]);
    const pooled = pool(hidden, inputs.attentionMask, output.pooling);
    checkShape('pooling', pooled.shape, [B, D]);
    const vectors = finish(pooled, output);
    checkShape('output', vectors.shape, [B, output.dimensions]);
    return vectors;
  });
  const measuredPeakBytes = takePeakMemory();
  try {
    return { vectors: (await result.data()) as Float32Array, measuredPeakBytes };
  } finally {
    result.dispose();
  }
}

function finish(pooled: tf.Tensor2D, output: OutputSpec): tf.Tensor2D {
  const D = pooled.shape[1];
  if (!output.normalize) return output.dimensions === D ? tf.clone(pooled) : tf.slice(pooled, [0, 0], [-1, output.dimensions]);
  return output.matryoshka ? matryoshka(pooled, output.dimensions) : l2Normalize(pooled);
}

/**
 * A batch of one short sequence: running it once after loading makes the
 * backend do its one-time work per weight matrix (XNNPACK packs each on first
 * use, WebGPU compiles its shaders), so the first real call is as fast as the
 * next ones.
 */
const WARM_UP_TOKENS = 16;

export function warmUpJob(attention: AttentionKernel, hiddenSize: number): BatchJob {
  return {
    sequences: [new Int32Array(WARM_UP_TOKENS)],
    length: WARM_UP_TOKENS,
    queryBlock: WARM_UP_TOKENS,
    attention,
    output: { pooling: 'mean', dimensions: hiddenSize, matryoshka: false, normalize: true },
  };
}
