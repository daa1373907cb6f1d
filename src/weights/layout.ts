/**
 * The one place where Hugging Face weight names and layouts become the runtime's:
 * `torch.nn.Linear` matrices ([out, in]) are transposed to [in, out] so the
 * forward pass calls `matMul(x, W)` without a transpose (the wasm backend's
 * fast GEMM path takes only untransposed operands), and the fused `Wqkv` is
 * cut into its q, k and v rows.
 */

export interface NamedTensor {
  readonly name: string;
  /** The checkpoint tensor it was made from, for messages. */
  readonly source?: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** [rows, cols] row-major to [cols, rows]. */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  // Blocked so both sides stay in cache for large matrices.
  const block = 64;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(r0 + block, rows);
    for (let c0 = 0; c0 < cols; c0 += block) {
      const c1 = Math.min(c0 + block, cols);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[r * cols + c];
      }
    }
  }
  return out;
}

/** How each runtime tensor is made from the Hugging Face tensors of the same model. */
interface Recipe {
  readonly sources: readonly string[];
  readonly build: (sources: Float32Array[], shapes: (readonly number[])[]) => Float32Array;
}

const copy: Recipe['build'] = ([x]) => x;
const transposed: Recipe['build'] = ([x], [[rows, cols]]) => transpose(x, rows, cols);

/** The recipe for every runtime tensor name, given the number of layers. */
export function hfToRuntimeRecipes(layers: number): Map<string, Recipe> {
  const recipes = new Map<string, Recipe>([
    ['embeddings.word', { sources: ['embeddings.word_embeddings.weight'], build: copy }],
    ['embeddings.token_type', { sources: ['embeddings.token_type_embeddings.weight'], build: copy }],
    ['embeddings.norm.weight', { sources: ['emb_ln.weight'], build: copy }],
    ['embeddings.norm.bias', { sources: ['emb_ln.bias'], build: copy }],
  ]);
  for (let i = 0; i < layers; i++) {
    const hf = `encoder.layers.${i}`;
    const rt = `layers.${i}`;
    // Wqkv rows: q, then k, then v, each D rows (head-major inside).
    (['q', 'k', 'v'] as const).forEach((part, i) => {
      recipes.set(`${rt}.attn.${part}`, {
        sources: [`${hf}.attn.Wqkv.weight`],
        build: ([w], [[, D]]) => transpose(w.subarray(i * D * D, (i + 1) * D * D), D, D),
      });
    });
    recipes.set(`${rt}.attn.out`, { sources: [`${hf}.attn.out_proj.weight`], build: transposed });
    // fc11 is the value ("up") projection and fc12 the gate: upstream computes fc2(fc11(x) * silu(fc12(x))).
    recipes.set(`${rt}.mlp.up`, { sources: [`${hf}.mlp.fc11.weight`], build: transposed });
    recipes.set(`${rt}.mlp.gate`, { sources: [`${hf}.mlp.fc12.weight`], build: transposed });
    recipes.set(`${rt}.mlp.down`, { sources: [`${hf}.mlp.fc2.weight`], build: transposed });
    for (const norm of ['norm1', 'norm2']) {
      for (const part of ['weight', 'bias']) {
        recipes.set(`${rt}.${norm}.${part}`, { sources: [`${hf}.${norm}.${part}`], build: copy });
      }
    }
  }
  return recipes;
}
