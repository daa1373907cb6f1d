import { hfNames, runtimeNames } from './weight-table.js';

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
  // Blocked so both sides stay in cache for large matrices; within a block the
  // writes run along a row of `out` with the indices stepped, not multiplied
  // (2× faster in V8 than the textbook loop, whose bounds checks stay in).
  const block = 64;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(r0 + block, rows);
    for (let c0 = 0; c0 < cols; c0 += block) {
      const c1 = Math.min(c0 + block, cols);
      for (let c = c0; c < c1; c++) {
        for (let r = r0, from = r0 * cols + c, to = c * rows + r0; r < r1; r++, from += cols, to++) out[to] = data[from];
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
    [runtimeNames.word, { sources: [hfNames.word], build: copy }],
    [runtimeNames.tokenType, { sources: [hfNames.tokenType], build: copy }],
    [runtimeNames.embLnWeight, { sources: [hfNames.embLnWeight], build: copy }],
    [runtimeNames.embLnBias, { sources: [hfNames.embLnBias], build: copy }],
  ]);
  for (let i = 0; i < layers; i++) {
    const hf = hfNames.layer(i);
    const rt = runtimeNames.layer(i);
    // Wqkv rows: q, then k, then v, each D rows (head-major inside).
    [rt.q, rt.k, rt.v].forEach((name, part) => {
      recipes.set(name, {
        sources: [hf.wqkv],
        build: ([w], [[, D]]) => transpose(w.subarray(part * D * D, (part + 1) * D * D), D, D),
      });
    });
    recipes.set(rt.out, { sources: [hf.out], build: transposed });
    // fc11 is the value ("up") projection and fc12 the gate: upstream computes fc2(fc11(x) * silu(fc12(x))).
    recipes.set(rt.up, { sources: [hf.fc11], build: transposed });
    recipes.set(rt.gate, { sources: [hf.fc12], build: transposed });
    recipes.set(rt.down, { sources: [hf.fc2], build: transposed });
    for (const [from, to] of [[hf.norm1, rt.norm1], [hf.norm2, rt.norm2]] as const) {
      recipes.set(to.weight, { sources: [from.weight], build: copy });
      recipes.set(to.bias, { sources: [from.bias], build: copy });
    }
  }
  return recipes;
}
