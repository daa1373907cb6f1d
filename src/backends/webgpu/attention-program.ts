import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program.js';

/**
 * Rotary attention as one WGSL kernel: queries and keys rotated (rotate-half)
 * as they are loaded, queries scaled, softmax(q·kᵀ + bias)·v with a blockwise
 * online softmax ("flash attention"), in the projections' own [B, T, H, hd]
 * layout. Nothing of size T² is stored, so memory is linear in length and a
 * single 8192-token text fits in any adapter's per-buffer limit; and the
 * transposes and rotary arithmetic that surround attention in tfjs (some
 * twenty kernels a layer, each a pass over memory) are not needed.
 *
 * One workgroup takes `queryTile` query rows of one (sequence, head), one row
 * per thread; key and value rows stream through workgroup memory `keyTile` at
 * a time. Each thread keeps its query row, its output accumulator and the
 * running maximum and sum of its softmax, and rescales them once per tile
 * when the maximum grows, as FlashAttention does.
 *
 * Rows are held as vectors (vec4 where hd/2 allows): every thread reads the
 * same key and value elements from workgroup memory, so the kernel is bound
 * by those reads, and a vec4 read feeds four multiply-adds where a scalar
 * feeds one.
 */

/** Workgroup memory WebGPU guarantees on every adapter (`maxComputeWorkgroupStorageSize`'s default). */
export const GUARANTEED_WORKGROUP_BYTES = 16384;

export interface AttentionTiles {
  /** Query rows per workgroup, one per thread. */
  readonly queryTile: number;
  /** Key (and value) rows per pass through workgroup memory. */
  readonly keyTile: number;
}

/**
 * Query rows per workgroup, one per thread, unless asked otherwise: the rows
 * share each tile's loads. On an H200, 128 ran 1.7× faster than 64, and 256
 * no faster (`scripts/gpu-check/attention-sweep.ts`).
 */
export const QUERY_TILE = 128;
/**
 * The most key rows per tile. Each thread keeps a score per key of the tile
 * next to its query row and accumulator; on an H200 a tile of 64 keys ran
 * about 1.4× slower than 32, and 16 keys 1.1–1.2× slower.
 */
export const MAX_KEY_TILE = 32;

/** Key rows per tile: as many as the key, value and bias tiles fit in `workgroupBytes`, at most {@link MAX_KEY_TILE}. */
export function keyTileFor(headDim: number, workgroupBytes = GUARANTEED_WORKGROUP_BYTES, maxKeyTile = MAX_KEY_TILE): number {
  return Math.max(1, Math.min(maxKeyTile, Math.floor(workgroupBytes / (2 * headDim * 4 + 4))));
}

/** The widest vector (4, 2 or 1 floats) that divides half a head, so the rotary halves split into whole vectors. */
export function vectorWidthFor(headDim: number): 1 | 2 | 4 {
  const half = headDim / 2;
  return half % 4 === 0 ? 4 : half % 2 === 0 ? 2 : 1;
}

/** The program, as tfjs-backend-webgpu's `runWebGPUProgram` takes it. */
export class FusedAttentionProgram implements WebGPUProgram {
  readonly variableNames = ['queries', 'keys', 'values', 'cosines', 'sines', 'bias'];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  readonly uniforms = 'scale : f32, ';
  shaderKey: string;
  private readonly headDim: number;
  private readonly tiles: AttentionTiles;

  /** shape: [B, T, H, hd] of queries, keys, values and the output. */
  constructor(shape: readonly [number, number, number, number], tiles: AttentionTiles = { queryTile: QUERY_TILE, keyTile: keyTileFor(shape[3]) }) {
    const [B, T, H, hd] = shape;
    if (hd % 2 !== 0) throw new Error(`rotary attention needs an even head size, not ${hd}`);
    this.outputShape = [...shape];
    this.dispatchLayout = { x: [0, 1, 2, 3] };
    this.dispatch = [B * H * Math.ceil(T / tiles.queryTile), 1, 1];
    this.workgroupSize = [tiles.queryTile, 1, 1];
    this.headDim = hd;
    this.tiles = tiles;
    // The head size and tiles are compiled in; B, T, H and the tables' rows come from the shape uniforms.
    this.shaderKey = `nomicRotaryAttention_${hd}_${tiles.queryTile}_${tiles.keyTile}`;
  }

  getUserCode(): string {
    const HD = this.headDim;
    const W = vectorWidthFor(HD);
    const V = W === 1 ? 'f32' : `vec${W}<f32>`;
    const { queryTile: TQ, keyTile: TK } = this.tiles;
    // W consecutive floats of a buffer as one V.
    const loader = (buffer: string) => {
      const parts = Array.from({ length: W }, (_, c) => `${buffer}[i + ${c}]`).join(', ');
      return `fn load_${buffer}(i : i32) -> V { return V(${parts}); }`;
    };
    return `
  alias V = ${V};
  const W = ${W};
  const HD = ${HD};
  const HALF = ${HD / 2};
  const HDV = ${HD / W};
  const HALFV = ${HD / 2 / W};
  const TK = ${TK};
  const TQ = ${TQ};
  const LOWEST = -3.402823e+38f;
  var<workgroup> kTile : array<V, ${TK * (HD / W)}>;
  var<workgroup> vTile : array<V, ${TK * (HD / W)}>;
  var<workgroup> bTile : array<f32, ${TK}>;

  ${['queries', 'keys', 'values', 'cosines', 'sines'].map(loader).join('\n  ')}
  fn vdot(a : V, b : V) -> f32 { return ${W === 1 ? 'a * b' : 'dot(a, b)'}; }

  fn main(index : i32) {
    // queries, keys, values: [B, T, H, hd]; cosines, sines: [R, T, hd/2] with R = 1 or B; bias: [B, 1, 1, T].
    let T = uniforms.queriesShape[1];
    let H = uniforms.queriesShape[2];
    let blocks = (T + TQ - 1) / TQ;
    let group = index / TQ;
    let tid = index % TQ;
    let bh = group / blocks;
    let b = bh / H;
    let h = bh % H;
    // A reshaped dispatch can run past the last (sequence, head): those threads only load and wait.
    let groupValid = bh < uniforms.queriesShape[0] * H;
    let row = (group % blocks) * TQ + tid;
    let rowValid = groupValid && row < T;
    // Per-row NTK tables, or one table for the batch.
    let tableRow = select(0, b, uniforms.cosinesShape[0] > 1);
    let rowStride = H * HD;
    let base = b * T * rowStride + h * HD;

    var q : array<V, HDV>;
    var acc : array<V, HDV>;
    var s : array<f32, TK>;
    if (rowValid) {
      let at = base + row * rowStride;
      let angle = (tableRow * T + row) * HALF;
      for (var d = 0; d < HALFV; d++) {
        let x1 = load_queries(at + d * W);
        let x2 = load_queries(at + HALF + d * W);
        let c = load_cosines(angle + d * W);
        let sn = load_sines(angle + d * W);
        q[d] = (x1 * c - x2 * sn) * uniforms.scale;
        q[d + HALFV] = (x2 * c + x1 * sn) * uniforms.scale;
      }
    }
    var runningMax = LOWEST;
    var runningSum = 0.0;

    for (var start = 0; start < T; start += TK) {
      let count = min(TK, T - start);
      workgroupBarrier();
      for (var e = tid; e < count * HALFV; e += TQ) {
        if (groupValid) {
          let j = e / HALFV;
          let d = e % HALFV;
          let at = base + (start + j) * rowStride + d * W;
          let angle = (tableRow * T + start + j) * HALF + d * W;
          let x1 = load_keys(at);
          let x2 = load_keys(at + HALF);
          let c = load_cosines(angle);
          let sn = load_sines(angle);
          kTile[j * HDV + d] = x1 * c - x2 * sn;
          kTile[j * HDV + d + HALFV] = x2 * c + x1 * sn;
        }
      }
      for (var e = tid; e < count * HDV; e += TQ) {
        if (groupValid) { vTile[e] = load_values(base + (start + e / HDV) * rowStride + (e % HDV) * W); }
      }
      for (var e = tid; e < count; e += TQ) {
        if (groupValid) { bTile[e] = bias[b * T + start + e]; }
      }
      workgroupBarrier();

      var tileMax = LOWEST;
      for (var j = 0; j < count; j++) {
        var dotProduct = 0.0;
        for (var d = 0; d < HDV; d++) { dotProduct += vdot(q[d], kTile[j * HDV + d]); }
        s[j] = dotProduct + bTile[j];
        tileMax = max(tileMax, s[j]);
      }
      let newMax = max(runningMax, tileMax);
      let correction = exp(runningMax - newMax);
      runningSum *= correction;
      for (var d = 0; d < HDV; d++) { acc[d] *= correction; }
      for (var j = 0; j < count; j++) {
        let p = exp(s[j] - newMax);
        runningSum += p;
        for (var d = 0; d < HDV; d++) { acc[d] += p * vTile[j * HDV + d]; }
      }
      runningMax = newMax;
    }

    if (rowValid) {
      let inverse = 1.0 / runningSum;
      let at = base + row * rowStride;
      for (var d = 0; d < HDV; d++) {
        let o = acc[d] * inverse;
        ${W === 1 ? 'setOutputAtIndex(at + d, o);' : 'for (var c = 0; c < W; c++) { setOutputAtIndex(at + d * W + c, o[c]); }'}
      }
    }
  }
`;
  }
}
