import { ROWS, rowScale, tiledProduct, type KernelModuleOptions, type TiledProduct } from './gemm-wat.js';

/**
 * The WebAssembly text of the q8 product on relaxed SIMD, a module of its own
 * because an engine without relaxed SIMD refuses to compile any module that
 * holds one of its instructions. Assembled by `scripts/build-wasm.ts`; used
 * only where `relaxed-probe.ts` has found it exact in the engine at hand.
 *
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s` multiplies 16 signed bytes by 16
 * bytes of 0..127 and adds each group of four into an int32 lane, in one
 * instruction on CPUs with VNNI (about 2.3× the baseline kernel in
 * Chromium here); its result is defined only while the second operand stays
 * within 0..127. So the activations are quantized to -63..63 and stored plus
 * 64 (`quantize_rows_relaxed`), and the product takes back 64 · Σₖ w(k, c)
 * per column, summed once per weight (`relax_codes`): the sums equal
 * Σ w · a exactly, at half the activation resolution of the baseline kernel.
 *
 * Layouts (byte addresses):
 * - activations: one byte per value, a + 64, row-major [M, K];
 * - weights: int8, per block of 8 output columns, per quad of input rows
 *   k..k+3, 32 bytes: columns 0..3 then 4..7, each its 4 values
 *   `w(k..k+3, c)`: `[N/8][K/4][8][4]`; after the K · N codes, one int32 per
 *   column, 64 · Σₖ w(k, c).
 */
export function relaxedKernelWat({ sharedMemory }: KernelModuleOptions): string {
  const memory = sharedMemory ? '(memory 1 65536 shared)' : '(memory 1)';
  return `(module
  (import "env" "memory" ${memory})
${quantizeRowsRelaxed()}
${relaxCodes()}
${tiledProduct(RELAXED_PRODUCT)}
)
`;
}

/** Largest activation code on this road: a + 64 must stay within 0..127. */
export const RELAXED_ACTIVATION_MAX = 63;
/** What each stored activation code carries above its value. */
export const RELAXED_ACTIVATION_OFFSET = 64;

/**
 * quantize_rows_relaxed(x, rows, k, codes, scales): each float32 row of x
 * [rows, k] (k a multiple of 8) to bytes round(x · 63 / max|x|) + 64, ties
 * to even, with its scale max|x| / 63 (0 for a row of zeros, whose bytes are 64).
 */
function quantizeRowsRelaxed(): string {
  const half = (offset: number) =>
    `(i32x4.add (local.get $offset) (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=${offset} align=4 (local.get $p)) (local.get $inverse)))))`;
  return `  (func (export "quantize_rows_relaxed") (param $x i32) (param $rows i32) (param $k i32) (param $codes i32) (param $scales i32)
    (local $row i32) (local $p i32) (local $end i32) (local $max v128) (local $inverse v128) (local $offset v128) (local $m f32) (local $words v128)
    (local.set $offset (i32x4.splat (i32.const ${RELAXED_ACTIVATION_OFFSET})))
    (local.set $row (i32.const 0))
    (block $done (loop $rows
      (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
${rowScale(RELAXED_ACTIVATION_MAX)}
      ;; bytes, 8 at a time: two quarters narrowed to 16 bits, then to 8
      (block $coded (loop $code
        (br_if $coded (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $words (i16x8.narrow_i32x4_s ${half(0)} ${half(16)}))
        (v128.store64_lane align=1 0 (local.get $codes) (i8x16.narrow_i16x8_u (local.get $words) (local.get $words)))
        (local.set $codes (i32.add (local.get $codes) (i32.const 8)))
        (local.set $p (i32.add (local.get $p) (i32.const 32)))
        (br $code)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows)))
  )`;
}

/**
 * relax_codes(weights, k, n): a weight's codes in the baseline kernel's
 * layout (`[N/8][K/2][8][2]`) turned, in place, into this kernel's, each
 * quad of input rows of a block interleaving its two pairs; then each
 * column's 64 · Σₖ w(k, c) written after the codes.
 */
function relaxCodes(): string {
  const lo = '0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23';
  const hi = '8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31';
  const columnSums = (v: string) => `(i32x4.extadd_pairwise_i16x8_s (i16x8.extadd_pairwise_i8x16_s ${v}))`;
  return `  (func (export "relax_codes") (param $weights i32) (param $k i32) (param $n i32)
    (local $p i32) (local $end i32) (local $blockEnd i32) (local $first v128) (local $second v128) (local $lo v128) (local $hi v128)
    (local $sumLo v128) (local $sumHi v128) (local $sums i32)
    (local.set $p (local.get $weights))
    (local.set $end (i32.add (local.get $weights) (i32.mul (local.get $k) (local.get $n))))
    (local.set $sums (local.get $end))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $blockEnd (i32.add (local.get $p) (i32.shl (local.get $k) (i32.const 3))))
      (local.set $sumLo (v128.const i32x4 0 0 0 0))
      (local.set $sumHi (v128.const i32x4 0 0 0 0))
      (block $quadsDone (loop $quads
        (br_if $quadsDone (i32.ge_u (local.get $p) (local.get $blockEnd)))
        (local.set $first (v128.load (local.get $p)))
        (local.set $second (v128.load offset=16 (local.get $p)))
        (local.set $lo (i8x16.shuffle ${lo} (local.get $first) (local.get $second)))
        (local.set $hi (i8x16.shuffle ${hi} (local.get $first) (local.get $second)))
        (v128.store (local.get $p) (local.get $lo))
        (v128.store offset=16 (local.get $p) (local.get $hi))
        (local.set $sumLo (i32x4.add (local.get $sumLo) ${columnSums('(local.get $lo)')}))
        (local.set $sumHi (i32x4.add (local.get $sumHi) ${columnSums('(local.get $hi)')}))
        (local.set $p (i32.add (local.get $p) (i32.const 32)))
        (br $quads)))
      (v128.store (local.get $sums) (i32x4.shl (local.get $sumLo) (i32.const 6)))
      (v128.store offset=16 (local.get $sums) (i32x4.shl (local.get $sumHi) (i32.const 6)))
      (local.set $sums (i32.add (local.get $sums) (i32.const 32)))
      (br $blocks)))
  )`;
}

/**
 * gemm_relaxed(codes, rowScales, m, k, weights, columnScales, n, out, rowBegin, rowEnd, columnBegin, columnEnd):
 * out[r, c] = float(Σₖ (codes[r, k] - 64) · w[k, c]) · (columnScales[c] · rowScales[r]),
 * each step rounded to float32, as the baseline kernel rounds it. Per quad
 * of input rows, two loads of a block's weights, each row's quad splatted,
 * eight relaxed dots that add as they go.
 */
const RELAXED_PRODUCT: TiledProduct = {
  name: 'gemm_relaxed',
  params: ['$codes', '$rowScales', '$m', '$k', '$weights', '$columnScales', '$n', '$out'],
  activations: '$codes',
  activationBytes: 1,
  kPerTurn: 4,
  weightShift: 3,
  locals: '(local $wlo v128) (local $whi v128) (local $quad v128) (local $scale v128) (local $cs i32) (local $sums i32)',
  turn: [
    '(local.set $wlo (v128.load (local.get $w)))',
    '(local.set $whi (v128.load offset=16 (local.get $w)))',
    ...ROWS.flatMap((r) => [
      `(local.set $quad (v128.load32_splat (local.get $a${r})))`,
      `(local.set $acc${r}lo (i32x4.relaxed_dot_i8x16_i7x16_add_s (local.get $wlo) (local.get $quad) (local.get $acc${r}lo)))`,
      `(local.set $acc${r}hi (i32x4.relaxed_dot_i8x16_i7x16_add_s (local.get $whi) (local.get $quad) (local.get $acc${r}hi)))`,
    ]),
  ],
  store: (r) => [
    '(local.set $cs (i32.add (local.get $columnScales) (i32.shl (local.get $column) (i32.const 2))))',
    '(local.set $sums (i32.add (i32.add (local.get $weights) (i32.mul (local.get $k) (local.get $n))) (i32.shl (local.get $column) (i32.const 2))))',
    `(local.set $scale (f32x4.splat (f32.load (i32.add (local.get $rowScales) (i32.shl (i32.add (local.get $row) (i32.const ${r})) (i32.const 2))))))`,
    `(v128.store align=4 (local.get $dest) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.sub (local.get $acc${r}lo) (v128.load align=4 (local.get $sums)))) (f32x4.mul (v128.load align=4 (local.get $cs)) (local.get $scale))))`,
    `(v128.store offset=16 align=4 (local.get $dest) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.sub (local.get $acc${r}hi) (v128.load offset=16 align=4 (local.get $sums)))) (f32x4.mul (v128.load offset=16 align=4 (local.get $cs)) (local.get $scale))))`,
  ],
};
