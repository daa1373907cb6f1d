import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors.js';
import type { NomicBertConfig } from '../weights/config.js';
import type { NamedTensor } from '../weights/layout.js';
import type { TensorSource } from '../weights/load.js';
import { runtimeNames } from '../weights/weight-table.js';
import { defaultAttentionKernel, maskBias, type AttentionContext, type AttentionKernel } from './attention.js';
import { block, type BlockWeights } from './block.js';
import { embed, type EmbeddingWeights } from './embeddings.js';
import { RotaryEmbedding } from './rotary.js';

/** Makes a float32 tensor of `shape` on the active backend, whose values `fill` writes into the memory it is given. */
export type TensorAllocator = (shape: readonly number[], fill: (target: Float32Array) => void) => tf.Tensor;

/** Fills a JavaScript array, which tfjs then copies to the backend: works on every backend. */
export const allocateInJs: TensorAllocator = (shape, fill) => {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(data);
  return tf.tensor(data, [...shape], 'float32');
};

/**
 * A float32 tensor of `shape` whose memory `target` is, made before its
 * values are there: `target` must stay valid while other tensors are made
 * (the threaded wasm backend's heap, shared memory, never moves).
 */
export interface WeightSlot {
  readonly tensor: tf.Tensor;
  readonly target: Float32Array;
  /**
   * A backend's quick check of the values once written: true when every one
   * is finite; false when one may not be, and the loader then looks for it.
   * Absent where the backend has none quicker than the loader's own pass.
   */
  readonly allFinite?: () => boolean;
}
export type SlotAllocator = (shape: readonly number[]) => WeightSlot;

/**
 * Makes the projection weights (the matrices every product multiplies by) on
 * a backend that prepares them for its matMuls, and may keep only the
 * prepared form. Each weight's values are written by `fill` into memory the
 * packer lends; `checkFinite` throws for a NaN or infinity in them, and is
 * called unless the preparation has vouched for every value itself.
 */
export interface WeightPacker {
  pack(shape: readonly number[], fill: (target: Float32Array) => Promise<void>, checkFinite: (data: Float32Array) => void): Promise<tf.Tensor>;
  /** The same, one weight at a time, with a `fill` that checks the values itself. */
  packSync(shape: readonly number[], fill: (target: Float32Array) => void): tf.Tensor;
  /** Frees what the packer lent, once no fill is writing any more; the weights it made stay. */
  finish(): void;
}

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
  /** See {@link AttentionKernel}. @default per-head on wasm, fused on webgpu, batched elsewhere */
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
  private owned: tf.Tensor[];

  private constructor(
    readonly config: NomicBertConfig,
    weights: ReadonlyMap<string, tf.Tensor>,
  ) {
    this.owned = [...weights.values()];
    const get = <T extends tf.Tensor>(name: string) => weights.get(name) as T;
    this.embeddings = {
      word: get(runtimeNames.word),
      tokenType: get(runtimeNames.tokenType),
      normWeight: get(runtimeNames.embLnWeight),
      normBias: get(runtimeNames.embLnBias),
    };
    this.layers = Array.from({ length: config.n_layer }, (_, i) => {
      const n = runtimeNames.layer(i);
      return {
        attention: { q: get(n.q), k: get(n.k), v: get(n.v), out: get(n.out) },
        mlp: { up: get(n.up), gate: get(n.gate), down: get(n.down) },
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
   * Uploads runtime-layout tensors (as the loader yields them) to the active
   * backend. If the source fails midway, what was uploaded is freed.
   */
  static fromTensors(config: NomicBertConfig, tensors: Iterable<NamedTensor>): NomicBertModel {
    const sources = [...tensors].map(({ name, shape, data }) => ({ name, shape, readInto: (target: Float32Array) => target.set(data) }));
    return NomicBertModel.fromSources(config, sources);
  }

  /**
   * Makes each weight with `allocate`, which hands the tensor's memory to its
   * source to fill (for the wasm backend, a view of its heap: the file is read
   * straight into it), or, for the projections, with `packer`. If a source
   * fails midway, what was made is freed.
   */
  static fromSources(
    config: NomicBertConfig,
    sources: Iterable<Pick<TensorSource, 'name' | 'shape' | 'readInto'>>,
    allocate: TensorAllocator = allocateInJs,
    packer?: WeightPacker,
  ): NomicBertModel {
    const projections = projectionNames(config);
    const weights = new Map<string, tf.Tensor>();
    try {
      for (const { name, shape, readInto } of sources) {
        weights.set(name, packer !== undefined && projections.has(name) ? packer.packSync(shape, readInto) : allocate(shape, readInto));
      }
    } catch (error) {
      for (const t of weights.values()) t.dispose();
      throw error;
    } finally {
      packer?.finish();
    }
    return new NomicBertModel(config, weights);
  }

  /**
   * As {@link fromSources}, with the reads in flight at once on Node's I/O
   * threads: this thread meanwhile checks the weights already read, and the
   * projection matrices go through `packer` (XNNPACK packs a weight on its
   * first product, 0.95 s of the real model's start on two cores, which so
   * overlaps the reading). If any read or check fails, every tensor is freed
   * once no read is writing into one any more, and the first failure is thrown.
   */
  static async fromSourcesConcurrently(
    config: NomicBertConfig,
    sources: Iterable<Pick<TensorSource, 'name' | 'shape' | 'readIntoAsync' | 'checkFinite'>>,
    allocate: SlotAllocator,
    packer?: WeightPacker,
  ): Promise<NomicBertModel> {
    const projections = projectionNames(config);
    const weights = new Map<string, tf.Tensor>();
    const reads: Promise<void>[] = [];
    let failures: unknown[] = [];
    try {
      for (const { name, shape, readIntoAsync, checkFinite } of sources) {
        if (packer !== undefined && projections.has(name)) {
          reads.push(packer.pack(shape, (target) => readIntoAsync(target, false), checkFinite).then((tensor) => void weights.set(name, tensor)));
          continue;
        }
        const { tensor, target, allFinite } = allocate(shape);
        weights.set(name, tensor);
        // The read checks the values itself unless the backend has a quicker check.
        reads.push(
          readIntoAsync(target, allFinite === undefined).then(() => {
            if (allFinite !== undefined && !allFinite()) checkFinite(target);
          }),
        );
      }
    } catch (error) {
      failures = [error];
    }
    // Nothing may be freed while a read still writes into it.
    for (const result of await Promise.allSettled(reads)) if (result.status === 'rejected') failures.push(result.reason);
    packer?.finish();
    if (failures.length > 0) {
      for (const t of weights.values()) t.dispose();
      throw failures[0];
    }
    return new NomicBertModel(config, weights);
  }

  /**
   * Runs the encoder and returns `last_hidden_state`, [B, T, D]. The caller
   * disposes the result. Each layer runs in its own `tf.tidy`, so only one
   * layer's intermediates are alive at a time.
   */
  forward(inputs: EncoderInputs, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertAlive();
    const { inputIds, attentionMask } = inputs;
    const [B, T] = inputIds.shape;
    if (attentionMask.shape.join() !== inputIds.shape.join()) {
      throw new ShapeError('encoder input attention_mask', [B, T], attentionMask.shape);
    }
    if (inputs.tokenTypeIds !== undefined && inputs.tokenTypeIds.shape.join() !== inputIds.shape.join()) {
      throw new ShapeError('encoder input token_type_ids', [B, T], inputs.tokenTypeIds.shape);
    }
    const lengths = inputs.lengths ?? (this.rotary.mayScale(T) ? this.sequenceLengths(attentionMask) : undefined);
    if (lengths !== undefined && lengths.length !== B) throw new ShapeError('encoder input lengths', [B], [lengths.length]);
    const context: AttentionContext = {
      batch: B,
      length: T,
      heads: this.config.n_head,
      rotary: this.rotary.tables(lengths ?? new Array<number>(B).fill(T), T),
      maskBias: lengths?.every((length) => length === T) ? undefined : maskBias(attentionMask),
      queryBlock: options.queryBlock,
      kernel: options.attention ?? defaultAttentionKernel(tf.getBackend()),
    };
    const eps = this.config.layer_norm_epsilon;
    let x: tf.Tensor2D | undefined;
    try {
      x = tf.tidy(() => embed(this.embeddings, inputIds, inputs.tokenTypeIds ?? tf.zerosLike(inputIds), eps)); // [B·T, D]
      for (const layer of this.layers) {
        const input: tf.Tensor2D = x;
        x = tf.tidy(() => block(layer, input, context, eps));
        input.dispose();
      }
      return tf.reshape(x, [B, T, this.config.n_embd]) as tf.Tensor3D;
    } finally {
      // On success the reshaped result keeps the data alive; on failure this frees it.
      x?.dispose();
      context.rotary.cos.dispose();
      context.rotary.sin.dispose();
      context.maskBias?.dispose();
    }
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
    for (const t of this.owned) t.dispose();
    this.owned = [];
    this.rotary.dispose();
  }
}

/** The matrices every product multiplies by: q, k, v, out, up, gate and down of each layer. */
function projectionNames(config: NomicBertConfig): Set<string> {
  return new Set(Array.from({ length: config.n_layer }, (_, i) => runtimeNames.layer(i)).flatMap((n) => [n.q, n.k, n.v, n.out, n.up, n.gate, n.down]));
}
