import type { NomicBertConfig } from './config.js';

/**
 * The single source of truth for which tensors a model has and their shapes.
 * The loader's checks, the converter and the memory estimator all read it.
 *
 * Two layouts exist:
 * - `hf`: the Hugging Face checkpoint as published (`torch.nn.Linear` weights,
 *   [out, in], SwiGLU halves separate);
 * - `runtime`: what the transformer consumes: matrices pre-transposed to
 *   [in, out] so `matMul` needs no transpose, and the fused `Wqkv` cut into q,
 *   k and v. Slicing a fused product costs a copy of the output on every
 *   call in tfjs; three separate products cost nothing extra.
 */
export type WeightLayout = 'hf' | 'runtime';

export type WeightTable = ReadonlyMap<string, readonly number[]>;

/** `ffnWidth` defaults to the config's; the loader passes the width it finds in the checkpoint. */
export function weightTable(
  config: NomicBertConfig,
  layout: WeightLayout,
  ffnWidth: number = config.ffnWidth,
): WeightTable {
  const D = config.n_embd;
  const F = ffnWidth;
  const table = new Map<string, readonly number[]>();
  const embeddings = layout === 'hf' ? hfNames : runtimeNames;
  table.set(embeddings.word, [config.paddedVocabSize, D]);
  table.set(embeddings.tokenType, [config.type_vocab_size, D]);
  table.set(embeddings.embLnWeight, [D]);
  table.set(embeddings.embLnBias, [D]);
  for (let i = 0; i < config.n_layer; i++) {
    if (layout === 'hf') {
      const n = hfNames.layer(i);
      table.set(n.wqkv, [3 * D, D]);
      table.set(n.out, [D, D]);
      table.set(n.fc11, [F, D]);
      table.set(n.fc12, [F, D]);
      table.set(n.fc2, [D, F]);
      for (const norm of [n.norm1, n.norm2]) {
        table.set(norm.weight, [D]);
        table.set(norm.bias, [D]);
      }
    } else {
      const n = runtimeNames.layer(i);
      for (const m of [n.q, n.k, n.v, n.out]) table.set(m, [D, D]);
      table.set(n.up, [D, F]);
      table.set(n.gate, [D, F]);
      table.set(n.down, [F, D]);
      for (const norm of [n.norm1, n.norm2]) {
        table.set(norm.weight, [D]);
        table.set(norm.bias, [D]);
      }
    }
  }
  return table;
}

const norm = (prefix: string) => ({ weight: `${prefix}.weight`, bias: `${prefix}.bias` });

/** Tensor names of a Hugging Face `nomic_bert` checkpoint. */
export const hfNames = {
  word: 'embeddings.word_embeddings.weight',
  tokenType: 'embeddings.token_type_embeddings.weight',
  embLnWeight: 'emb_ln.weight',
  embLnBias: 'emb_ln.bias',
  layer: (i: number) => {
    const p = `encoder.layers.${i}`;
    return {
      wqkv: `${p}.attn.Wqkv.weight`,
      out: `${p}.attn.out_proj.weight`,
      fc11: `${p}.mlp.fc11.weight`,
      fc12: `${p}.mlp.fc12.weight`,
      fc2: `${p}.mlp.fc2.weight`,
      norm1: norm(`${p}.norm1`),
      norm2: norm(`${p}.norm2`),
    };
  },
} as const;

/** Tensor names of the runtime layout: what the transformer reads and the converter writes. */
export const runtimeNames = {
  word: 'embeddings.word',
  tokenType: 'embeddings.token_type',
  embLnWeight: 'embeddings.norm.weight',
  embLnBias: 'embeddings.norm.bias',
  layer: (i: number) => {
    const p = `layers.${i}`;
    return {
      q: `${p}.attn.q`,
      k: `${p}.attn.k`,
      v: `${p}.attn.v`,
      out: `${p}.attn.out`,
      up: `${p}.mlp.up`,
      gate: `${p}.mlp.gate`,
      down: `${p}.mlp.down`,
      norm1: norm(`${p}.norm1`),
      norm2: norm(`${p}.norm2`),
    };
  },
} as const;

/** The matrices every product multiplies by (runtime names): q, k, v, out, up, gate and down of each layer. */
export function projectionNames(layers: number): ReadonlySet<string> {
  return new Set(Array.from({ length: layers }, (_, i) => runtimeNames.layer(i)).flatMap((n) => [n.q, n.k, n.v, n.out, n.up, n.gate, n.down]));
}

/** The tensor of a q8 checkpoint that holds a projection's float32 scales, one per output column. */
export function q8ScalesName(projection: string): string {
  return `${projection}.scales`;
}

/**
 * The tensors of a q8 checkpoint (runtime layout, written by the converter
 * with `dtype: 'q8'`): each [K, N] projection as its int8 codes in the q8
 * kernels' packed layout, [N/8, K/2, 16] (see `q8-codes.ts`), and its N
 * scales; every other tensor as in `table`. The packing is part of the
 * runtime layout: changing it bumps `CONVERTED_FORMAT_VERSION`.
 */
export function q8Table(table: WeightTable, projections: ReadonlySet<string>): WeightTable {
  const q8 = new Map<string, readonly number[]>();
  for (const [name, shape] of table) {
    if (!projections.has(name)) {
      q8.set(name, shape);
      continue;
    }
    const [K, N] = shape;
    q8.set(name, [N / 8, K / 2, 16]);
    q8.set(q8ScalesName(name), [N]);
  }
  return q8;
}

/** Where the SwiGLU width can be read off a checkpoint of each layout. */
export function ffnWidthOf(layout: WeightLayout, shapeOf: (name: string) => readonly number[] | undefined) {
  if (layout === 'hf') return shapeOf(hfNames.layer(0).fc11)?.[0];
  return shapeOf(runtimeNames.layer(0).down)?.[0];
}

export function parameterCount(table: WeightTable): number {
  let total = 0;
  for (const shape of table.values()) total += shape.reduce((a, b) => a * b, 1);
  return total;
}
