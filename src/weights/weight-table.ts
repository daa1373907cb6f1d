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
  const names = layout === 'hf' ? HF_NAMES : RUNTIME_NAMES;
  table.set(names.word, [config.paddedVocabSize, D]);
  table.set(names.tokenType, [config.type_vocab_size, D]);
  table.set(`${names.embLn}.weight`, [D]);
  table.set(`${names.embLn}.bias`, [D]);
  for (let i = 0; i < config.n_layer; i++) {
    const p = `${names.layer}.${i}`;
    if (layout === 'hf') {
      table.set(`${p}.attn.Wqkv.weight`, [3 * D, D]);
      table.set(`${p}.attn.out_proj.weight`, [D, D]);
      table.set(`${p}.mlp.fc11.weight`, [F, D]);
      table.set(`${p}.mlp.fc12.weight`, [F, D]);
      table.set(`${p}.mlp.fc2.weight`, [D, F]);
    } else {
      for (const m of ['q', 'k', 'v', 'out']) table.set(`${p}.attn.${m}`, [D, D]);
      table.set(`${p}.mlp.up`, [D, F]);
      table.set(`${p}.mlp.gate`, [D, F]);
      table.set(`${p}.mlp.down`, [F, D]);
    }
    for (const norm of ['norm1', 'norm2']) {
      table.set(`${p}.${norm}.weight`, [D]);
      table.set(`${p}.${norm}.bias`, [D]);
    }
  }
  return table;
}

const HF_NAMES = {
  word: 'embeddings.word_embeddings.weight',
  tokenType: 'embeddings.token_type_embeddings.weight',
  embLn: 'emb_ln',
  layer: 'encoder.layers',
};

const RUNTIME_NAMES = {
  word: 'embeddings.word',
  tokenType: 'embeddings.token_type',
  embLn: 'embeddings.norm',
  layer: 'layers',
};

/** Runtime names, for code that reads the runtime layout. */
export const runtimeNames = {
  word: RUNTIME_NAMES.word,
  tokenType: RUNTIME_NAMES.tokenType,
  embLn: RUNTIME_NAMES.embLn,
  layer: (i: number) => `${RUNTIME_NAMES.layer}.${i}`,
} as const;

/** Where the SwiGLU width can be read off a checkpoint of each layout. */
export function ffnWidthOf(layout: WeightLayout, shapeOf: (name: string) => readonly number[] | undefined) {
  if (layout === 'hf') return shapeOf('encoder.layers.0.mlp.fc11.weight')?.[0];
  return shapeOf('layers.0.mlp.down')?.[0];
}

export function parameterCount(table: WeightTable): number {
  let total = 0;
  for (const shape of table.values()) total += shape.reduce((a, b) => a * b, 1);
  return total;
}
