import * as tf from '@tensorflow/tfjs-core';
import type { AttentionKernel } from '../model/attention.js';
import { measurePeakBytes } from '../model/memory-watermark.js';
import type { NomicBertModel } from '../model/nomic-bert.js';
import { pool, type Pooling } from './pooling.js';
import { toEncoderInputs } from './tensors.js';
import { checkShape } from './validate.js';

/** One batch of work: right-padded to `length`, run as one forward pass. */
export interface BatchJob {
  readonly sequences: readonly Int32Array[];
  readonly length: number;
  readonly queryBlock: number;
  readonly attention: AttentionKernel;
  readonly pooling: Pooling;
}

export interface BatchOutput {
  /** [B, D] row-major: each sequence's pooled hidden state. */
  readonly vectors: Float32Array;
  /** The backend's tensor memory peak during the batch, weights included. */
  readonly measuredPeakBytes: number;
}

/**
 * Tokens to pooled vectors for one batch: tensor conversion, transformer,
 * pooling, with the dimension validator between stages, and one readback.
 * Every tensor is freed before it returns, also when a stage throws. What a
 * caller asked of each vector (normalisation, Matryoshka size, precision) is
 * done on the read-back vectors (`finish-vector.ts`), so that texts asking for
 * different outputs can share a batch.
 */
export async function runBatchJob(model: NomicBertModel, job: BatchJob): Promise<BatchOutput> {
  const B = job.sequences.length;
  const T = job.length;
  const D = model.config.n_embd;
  const { result, peakBytes: measuredPeakBytes } = measurePeakBytes(() =>
    tf.tidy(() => {
      const inputs = toEncoderInputs(job.sequences);
      checkShape('tensor conversion: input_ids', inputs.inputIds.shape, [B, T]);
      checkShape('tensor conversion: attention_mask', inputs.attentionMask.shape, [B, T]);
      const hidden = model.forward(inputs, { queryBlock: job.queryBlock, attention: job.attention });
      checkShape('transformer: last_hidden_state', hidden.shape, [B, T, D]);
      const pooled = pool(hidden, inputs.attentionMask, job.pooling);
      checkShape('pooling', pooled.shape, [B, D]);
      return pooled;
    }),
  );
  try {
    return { vectors: (await result.data()) as Float32Array, measuredPeakBytes };
  } finally {
    result.dispose();
  }
}

const WARM_UP_TOKENS = 16;

/**
 * A batch of one short sequence: running it once after loading makes the
 * backend do its one-time work (WebGPU compiles its shaders; on wasm, where
 * the loader has packed the weights, XNNPACK's kernels and V8's compiler warm
 * up), so the first real call is about as fast as the next ones.
 */
export function warmUpJob(attention: AttentionKernel): BatchJob {
  return {
    sequences: [new Int32Array(WARM_UP_TOKENS)],
    length: WARM_UP_TOKENS,
    queryBlock: WARM_UP_TOKENS,
    attention,
    pooling: 'mean',
  };
}
