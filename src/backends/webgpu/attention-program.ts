/**
 * Rotary attention as one WGSL kernel: queries and keys rotated (rotate-half)
 * as they are loaded, queries scaled, softmax(q·kᵀ + bias)·v with a blockwise
 * online softmax ("flash attention"), in the projections' own [B, T, H, hd]
 * layout. Nothing of size T² is stored, so memory is linear in length and a
 * single 8192-token text fits in any adapter's per-buffer limit; and the
 * transposes and rotary arithmetic that surround attention in tfjs (some
 * twenty kernels a layer, each a pass over memory) are not needed.
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
  readonly variableNames = ['queries', 'keys', 'values', 'cosines', 'sines', 'bias'];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [QUERY_TILE, 1, 1];
  readonly uniforms = 'scale : f32, ';
  shaderKey: string;
  private readonly headDim: number;
  private readonly keyTile: number;

  /** shape: [B, T, H, hd] of queries, keys, values and the output. */
  constructor(shape: readonly [number, number, number, number]) {
    const [B, T, H, hd] = shape;
    this.outputShape = [...shape];
    this.dispatchLayout = { x: [0, 1, 2, 3] };
    this.dispatch = [B * H * Math.ceil(T / QUERY_TILE), 1, 1];
    this.headDim = hd;
    this.keyTile = keyTileFor(hd);
    // The head size and tile are compiled in; B, T, H and the tables' rows come from the shape uniforms.
    this.shaderKey = `nomicRotaryAttention_${hd}_${this.keyTile}`;
  }

  getUserCode(): string {
    const HD = this.headDim;
    const TK = this.keyTile;
    return `
  const HD = ${HD};
  const HALF = ${HD / 2};
  const TK = ${TK};
  const TQ = ${QUERY_TILE};
  const LOWEST = -3.402823e+38f;
  var<workgroup> kTile : array<f32, ${TK * HD}>;
  var<workgroup> vTile : array<f32, ${TK * HD}>;
  var<workgroup> bTile : array<f32, ${TK}>;

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

    var q : array<f32, HD>;
    var acc : array<f32, HD>;
    var s : array<f32, TK>;
    if (rowValid) {
      let at = base + row * rowStride;
      let angle = (tableRow * T + row) * HALF;
      for (var d = 0; d < HALF; d++) {
        let x1 = queries[at + d];
        let x2 = queries[at + d + HALF];
        let c = cosines[angle + d];
        let sn = sines[angle + d];
        q[d] = (x1 * c - x2 * sn) * uniforms.scale;
        q[d + HALF] = (x2 * c + x1 * sn) * uniforms.scale;
      }
    }
    var runningMax = LOWEST;
    var runningSum = 0.0;

    for (var start = 0; start < T; start += TK) {
      let count = min(TK, T - start);
      workgroupBarrier();
      for (var e = tid; e < count * HALF; e += TQ) {
        if (groupValid) {
          let j = e / HALF;
          let d = e % HALF;
          let at = base + (start + j) * rowStride;
          let angle = (tableRow * T + start + j) * HALF;
          let x1 = keys[at + d];
          let x2 = keys[at + d + HALF];
          let c = cosines[angle + d];
          let sn = sines[angle + d];
          kTile[j * HD + d] = x1 * c - x2 * sn;
          kTile[j * HD + d + HALF] = x2 * c + x1 * sn;
        }
      }
      for (var e = tid; e < count * HD; e += TQ) {
        if (groupValid) { vTile[e] = values[base + (start + e / HD) * rowStride + e % HD]; }
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
      let at = base + row * rowStride;
      for (var d = 0; d < HD; d++) { setOutputAtIndex(at + d, acc[d] * inverse); }
    }
  }
`;
  }
}
