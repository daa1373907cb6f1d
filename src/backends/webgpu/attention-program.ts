/**
 * Attention as one WGSL kernel: softmax(q·kᵀ + bias)·v with a blockwise
 * online softmax ("flash attention"), so the B·H·T² score matrix is never
 * stored: memory is linear in length, and a single 8192-token text fits in
 * any adapter's per-buffer limit.
 *
 * One workgroup takes QUERY_TILE query rows of one (sequence, head), one row
 * per thread; key and value rows stream through workgroup memory a tile at a
 * time. Each thread keeps its query row, its output accumulator and the
 * running maximum and sum of its softmax, and rescales them once per tile
 * when the maximum grows, as FlashAttention does.
 */

/** Query rows per workgroup, one per thread. */
export const QUERY_TILE = 64;

/** Workgroup memory WebGPU guarantees on every adapter (`maxComputeWorkgroupStorageSize`'s default). */
const GUARANTEED_WORKGROUP_BYTES = 16384;

/** Key rows per tile: the key and value tiles together fill the guaranteed workgroup memory, at most 32 rows. */
export function keyTileFor(headDim: number): number {
  return Math.max(1, Math.min(32, Math.floor(GUARANTEED_WORKGROUP_BYTES / (2 * headDim * 4))));
}

/** The program, in the shape tfjs-backend-webgpu's `runWebGPUProgram` takes (`WebGPUProgram`). */
export class FusedAttentionProgram {
  readonly variableNames = ['queries', 'keys', 'values', 'bias'];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [QUERY_TILE, 1, 1];
  shaderKey: string;
  private readonly headDim: number;
  private readonly keyTile: number;

  /** shape: [B, H, T, hd] of queries, keys, values and the output. */
  constructor(shape: readonly [number, number, number, number]) {
    const [B, H, T, hd] = shape;
    this.outputShape = [...shape];
    this.dispatchLayout = { x: [0, 1, 2, 3] };
    this.dispatch = [B * H * Math.ceil(T / QUERY_TILE), 1, 1];
    this.headDim = hd;
    this.keyTile = keyTileFor(hd);
    // The head size and tile are compiled in; B, H and T come from the shape uniforms.
    this.shaderKey = `nomicFusedAttention_${hd}_${this.keyTile}`;
  }

  getUserCode(): string {
    const HD = this.headDim;
    const TK = this.keyTile;
    return `
  const HD = ${HD};
  const TK = ${TK};
  const TQ = ${QUERY_TILE};
  const LOWEST = -3.402823e+38f;
  var<workgroup> kTile : array<f32, ${TK * HD}>;
  var<workgroup> vTile : array<f32, ${TK * HD}>;
  var<workgroup> bTile : array<f32, ${TK}>;

  fn main(index : i32) {
    // Shape uniforms are [B, H, T, hd]; the bias is [B, 1, 1, T].
    let H = uniforms.queriesShape[1];
    let T = uniforms.queriesShape[2];
    let blocks = (T + TQ - 1) / TQ;
    let group = index / TQ;
    let tid = index % TQ;
    let bh = group / blocks;
    let b = bh / H;
    // A reshaped dispatch can run past the last (sequence, head): those threads only load and wait.
    let groupValid = bh < uniforms.queriesShape[0] * H;
    let row = (group % blocks) * TQ + tid;
    let rowValid = groupValid && row < T;
    let base = bh * T * HD;

    var q : array<f32, HD>;
    var acc : array<f32, HD>;
    var s : array<f32, TK>;
    if (rowValid) {
      for (var d = 0; d < HD; d++) { q[d] = queries[base + row * HD + d]; }
    }
    var runningMax = LOWEST;
    var runningSum = 0.0;

    for (var start = 0; start < T; start += TK) {
      let count = min(TK, T - start);
      workgroupBarrier();
      for (var e = tid; e < count * HD; e += TQ) {
        if (groupValid) {
          kTile[e] = keys[base + start * HD + e];
          vTile[e] = values[base + start * HD + e];
        }
      }
      if (tid < count && groupValid) { bTile[tid] = bias[b * T + start + tid]; }
      workgroupBarrier();

      var tileMax = LOWEST;
      for (var j = 0; j < count; j++) {
        var dotProduct = 0.0;
        for (var d = 0; d < HD; d++) { dotProduct += q[d] * kTile[j * HD + d]; }
        s[j] = dotProduct + bTile[j];
        tileMax = max(tileMax, s[j]);
      }
      let newMax = max(runningMax, tileMax);
      let correction = exp(runningMax - newMax);
      runningSum *= correction;
      for (var d = 0; d < HD; d++) { acc[d] *= correction; }
      for (var j = 0; j < count; j++) {
        let p = exp(s[j] - newMax);
        runningSum += p;
        for (var d = 0; d < HD; d++) { acc[d] += p * vTile[j * HD + d]; }
      }
      runningMax = newMax;
    }

    if (rowValid) {
      let inverse = 1.0 / runningSum;
      for (var d = 0; d < HD; d++) { setOutputAtIndex(base + row * HD + d, acc[d] * inverse); }
    }
  }
`;
  }
}
