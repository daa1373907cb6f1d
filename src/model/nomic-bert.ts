import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors.js';
import type { NomicBertConfig } from '../weights/config.js';
import { runtimeNames } from '../weights/weight-table.js';
import { maskBias, type AttentionContext, type AttentionKernel } from './attention.js';
import { block, type BlockWeights } from './block.js';
import { embed, type EmbeddingWeights } from './embeddings.js';
import { FUSED_ATTENTION, hasFusedKernel } from './fused-ops.js';
import { disposeWeight, type ModelWeight, type Projection } from './projection.js';
import { RotaryEmbedding } from './rotary.js';

/** A right-padded batch, as produced by the pipeline's tensor conversion. */
export interface EncoderInputs {
  /** [B, T] int32 token ids. */
  readonly inputIds: tf.Tensor2D;
  /** [B, T] 1 for real tokens, 0 for padding; int32 or float32. */
  readonly attentionMask: tf.Tensor2D;
  /** [B, T] int32 segment ids; zeros when omitted. */
  readonly tokenTypeIds?: tf.Tensor2D;
  /**
   * Real tokens per row, as the attention mask says. The pipeline knows them;
   * without them the encoder reads the mask back, synchronously, where it
   * needs them (only when NTK scaling may apply), which the webgpu backend
   * cannot do in Node.
   */
  readonly lengths?: readonly number[];
}

export interface ForwardOptions {
  /** Queries per attention block; see {@link AttentionContext.queryBlock}. @default the whole sequence */
  readonly queryBlock?: number;
  /**
   * See {@link AttentionKernel}; the embedder asks its backend for the one that suits each batch.
   * @default fused where the backend has the fused kernel (webgpu), else batched
   */
  readonly attention?: AttentionKernel;
}

/**
 * The Nomic BERT encoder (`NomicBertModel` without pooler). Owns its weight
 * tensors and rotary tables; call {@link dispose} to free them.
 */
export class NomicBertModel {
  private readonly embeddings: EmbeddingWeights;
  private readonly layers: readonly BlockWeights[];
  private readonly rotary: RotaryEmbedding;
  private owned: ModelWeight[];

  /** Takes the runtime-layout weights by name (see `build-model.ts` for how they are made) and owns them. */
  constructor(
    readonly config: NomicBertConfig,
    weights: ReadonlyMap<string, ModelWeight>,
  ) {
    this.owned = [...weights.values()];
    const get = <T extends tf.Tensor>(name: string) => weights.get(name) as T;
    const projection = (name: string) => weights.get(name) as Projection;
    this.embeddings = {
      word: get(runtimeNames.word),
      tokenType: get(runtimeNames.tokenType),
      normWeight: get(runtimeNames.embLnWeight),
      normBias: get(runtimeNames.embLnBias),
    };
    this.layers = Array.from({ length: config.n_layer }, (_, i) => {
      const n = runtimeNames.layer(i);
      return {
        attention: { q: projection(n.q), k: projection(n.k), v: projection(n.v), out: projection(n.out) },
        mlp: { up: projection(n.up), gate: projection(n.gate), down: projection(n.down) },
        norm1: { weight: get(n.norm1.weight), bias: get(n.norm1.bias) },
        norm2: { weight: get(n.norm2.weight), bias: get(n.norm2.bias) },
      };
    });
    this.rotary = new RotaryEmbedding({
      headDim: config.headDim,
      base: config.rotary_emb_base,
      scalingFactor: config.rotary_scaling_factor,
      maxTrainedPositions: config.max_trained_positions,
    });
  }

  /**
   * Runs the encoder and returns `last_hidden_state`, [B, T, D]. The caller
   * disposes the result. Each layer runs in its own `tf.tidy`, so only one
   * layer's intermediates are alive at a time.
   */
  forward(inputs: EncoderInputs, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertAlive();
    const [B, T] = inputs.inputIds.shape;
    const context = this.batchContext(inputs, options); // rotary tables and padding bias, once per batch
    const eps = this.config.layer_norm_epsilon;
    let x: tf.Tensor2D | undefined;
    try {
      x = tf.tidy(() => embed(this.embeddings, inputs.inputIds, inputs.tokenTypeIds ?? tf.zerosLike(inputs.inputIds), eps)); // [B·T, D]
      for (const layer of this.layers) {
        const input: tf.Tensor2D = x;
        x = tf.tidy(() => block(layer, input, context, eps)); // [B·T, D]
        input.dispose();
      }
      return tf.reshape(x, [B, T, this.config.n_embd]) as tf.Tensor3D; // [B, T, D]
    } finally {
      // On success the reshaped result keeps the data alive; on failure this frees it.
      x?.dispose();
      context.rotary.cos.dispose();
      context.rotary.sin.dispose();
      context.maskBias?.dispose();
    }
  }

  /** Checks the inputs' shapes and makes what every layer shares: the rotary tables and the padding bias. */
  private batchContext(inputs: EncoderInputs, options: ForwardOptions): AttentionContext {
    const { inputIds, attentionMask, tokenTypeIds } = inputs;
    const [B, T] = inputIds.shape;
    if (attentionMask.shape.join() !== inputIds.shape.join()) throw new ShapeError('encoder input attention_mask', [B, T], attentionMask.shape);
    if (tokenTypeIds !== undefined && tokenTypeIds.shape.join() !== inputIds.shape.join()) {
      throw new ShapeError('encoder input token_type_ids', [B, T], tokenTypeIds.shape);
    }
    const lengths = inputs.lengths ?? (this.rotary.mayScale(T) ? this.sequenceLengths(attentionMask) : undefined);
    if (lengths !== undefined && lengths.length !== B) throw new ShapeError('encoder input lengths', [B], [lengths.length]);
    return {
      batch: B,
      length: T,
      heads: this.config.n_head,
      rotary: this.rotary.tables(lengths ?? new Array<number>(B).fill(T), T),
      maskBias: lengths?.every((length) => length === T) ? undefined : maskBias(attentionMask),
      queryBlock: options.queryBlock,
      kernel: options.attention ?? (hasFusedKernel(FUSED_ATTENTION) ? 'fused' : 'batched'),
    };
  }

  /** Real tokens per row, read from the mask (the batch is right-padded). */
  private sequenceLengths(attentionMask: tf.Tensor2D): number[] {
    const counts = tf.tidy(() => tf.sum(tf.cast(attentionMask, 'int32'), 1));
    try {
      return Array.from(counts.dataSync());
    } finally {
      counts.dispose();
    }
  }

  private assertAlive(): void {
    if (this.owned.length === 0) throw new Error('NomicBertModel used after dispose()');
  }

  /** Frees the weights and rotary tables; safe to call twice. */
  dispose(): void {
    for (const weight of this.owned) disposeWeight(weight);
    this.owned = [];
    this.rotary.dispose();
  }
}
