import { layerKernelsWat } from './layer-wat.js';

/**
 * The WebAssembly text of our product kernels, int8 (`dtype: 'q8'`) and
 * float32, generated so that the tile stays readable as the loop that
 * writes it. Assembled by
 * `scripts/build-wasm.ts` at build time; nothing here runs at embed time.
 *
 * The module has no data segments and imports its memory, so it runs on the
 * wasm backend's own heap (the threaded build's shared memory, or the
 * single-threaded build's) and reads tensors where tfjs keeps them.
 *
 * Layouts (all little-endian, byte addresses):
 * - activations: int16 [M, K], one row's int8 values widened as they are quantized;
 * - weights: int8, per block of 8 output columns, per pair of input rows k, k+1,
 *   16 bytes `w(k, c), w(k+1, c)` for c = 0..7 of the block: `[N/8][K/2][8][2]`.
 *   `v128.load8x8_s` widens one half-block's 8 bytes to 16 bits and
 *   `i32x4.dot_i16x8_s` multiplies it by a row's pair (a_k, a_k+1), splatted,
 *   into the 4 columns' int32 sums;
 * - scales: float32, one per activation row and one per output column;
 * - float32 weights (`gemm_f32`): per block of 8 output columns, per input row
 *   k, the 8 values `w(k, c)`: `[N/8][K][8]`; its activations float32 [M, K].
 *
 * Sums stay exact: each dot adds at most 2·127·127, and K ≤ 65,536 keeps the
 * total below 2³¹.
 */

/** Rows of the output computed together: 4 rows × 8 columns are 8 v128 accumulators. */
export const TILE_ROWS = 4;
/** Output columns per weight block. */
export const TILE_COLUMNS = 8;
/** Activation rows that stay in cache while every weight block passes over them. */
export const ROW_BLOCK = 64;

export interface KernelModuleOptions {
  /** The threaded build's heap is a shared memory; an import must say so. */
  readonly sharedMemory: boolean;
}

export function q8KernelWat({ sharedMemory }: KernelModuleOptions): string {
  const memory = sharedMemory ? '(memory 1 65536 shared)' : '(memory 1)';
  return `(module
  (import "env" "memory" ${memory})
${quantizeRows()}
${tiledProduct(Q8_PRODUCT)}
${tiledProduct(F32_PRODUCT)}
${layerKernelsWat()}
)
`;
}

/**
 * The part of a row quantizer both kernels share: `$p` and `$end` over row
 * `$row` of x, its max |x| in `$m`, its scale max / levels stored, and
 * `$inverse` = levels / max splatted (0 for a row of zeros); `$p` is left
 * at the row's start.
 */
export function rowScale(levels: number): string {
  return `      ;; max |x| of the row
      (local.set $p (i32.add (local.get $x) (i32.mul (local.get $row) (i32.shl (local.get $k) (i32.const 2)))))
      (local.set $end (i32.add (local.get $p) (i32.shl (local.get $k) (i32.const 2))))
      (local.set $max (f32x4.splat (f32.const 0)))
      (block $maxed (loop $scan
        (br_if $maxed (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $max (f32x4.max (local.get $max) (f32x4.abs (v128.load align=4 (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $scan)))
      (local.set $m (f32.max
        (f32.max (f32x4.extract_lane 0 (local.get $max)) (f32x4.extract_lane 1 (local.get $max)))
        (f32.max (f32x4.extract_lane 2 (local.get $max)) (f32x4.extract_lane 3 (local.get $max)))))
      (f32.store (i32.add (local.get $scales) (i32.shl (local.get $row) (i32.const 2)))
        (f32.div (local.get $m) (f32.const ${levels})))
      (local.set $inverse (f32x4.splat
        (select (f32.div (f32.const ${levels}) (local.get $m)) (f32.const 0) (f32.gt (local.get $m) (f32.const 0)))))
      (local.set $p (i32.sub (local.get $p) (i32.shl (local.get $k) (i32.const 2))))`;
}

/**
 * quantize_rows(x, rows, k, codes, scales): each float32 row of x [rows, k]
 * (k a multiple of 8) to int16 codes round(x · 127 / max|x|), ties to even,
 * with its scale max|x| / 127 (0 for a row of zeros, whose codes are 0).
 */
function quantizeRows(): string {
  return `  (func (export "quantize_rows") (param $x i32) (param $rows i32) (param $k i32) (param $codes i32) (param $scales i32)
    (local $row i32) (local $p i32) (local $end i32) (local $max v128) (local $inverse v128) (local $m f32)
    (local.set $row (i32.const 0))
    (block $done (loop $rows
      (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
${rowScale(127)}
      ;; codes, 8 at a time
      (block $coded (loop $code
        (br_if $coded (i32.ge_u (local.get $p) (local.get $end)))
        (v128.store align=2 (local.get $codes)
          (i16x8.narrow_i32x4_s
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load align=4 (local.get $p)) (local.get $inverse))))
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 align=4 (local.get $p)) (local.get $inverse))))))
        (local.set $codes (i32.add (local.get $codes) (i32.const 16)))
        (local.set $p (i32.add (local.get $p) (i32.const 32)))
        (br $code)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows)))
  )`;
}

/**
 * One tiled product kernel: the loops over 64-row blocks, 8-column weight
 * blocks and 4-row tiles, and what differs between the element types.
 */
export interface TiledProduct {
  readonly name: string;
  /** Its parameters before `$rowBegin $rowEnd $columnBegin $columnEnd`; `$m $k $n $out $weights` among them. */
  readonly params: readonly string[];
  /** The parameter holding the activations, row-major [m, k]. */
  readonly activations: string;
  /** Bytes of one activation. */
  readonly activationBytes: number;
  /** Input rows per loop turn. */
  readonly kPerTurn: number;
  /** log₂ of the bytes of one input row of a weight block (8 columns). */
  readonly weightShift: number;
  readonly locals: string;
  /** One loop turn: reads `$w` and each row's `$a{r}`, adds into `$acc{r}lo` and `$acc{r}hi`. */
  readonly turn: readonly string[];
  /** Row r's 8 sums stored at `$dest` (columns `$column`..+7). */
  readonly store: (r: number) => readonly string[];
}

/** The tile's row numbers, for generators of its turns and stores. */
export const ROWS = Array.from({ length: TILE_ROWS }, (_, r) => r);

/**
 * gemm(codes, rowScales, m, k, weights, columnScales, n, out, rowBegin, rowEnd, columnBegin, columnEnd):
 * out[r, c] = float(Σ_k codes[r, k] · w[k, c]) · (columnScales[c] · rowScales[r]),
 * each step rounded to float32. Per pair of input rows, two widened
 * half-blocks of weights, each row's pair splatted, eight dots.
 */
const Q8_PRODUCT: TiledProduct = {
  name: 'gemm',
  params: ['$codes', '$rowScales', '$m', '$k', '$weights', '$columnScales', '$n', '$out'],
  activations: '$codes',
  activationBytes: 2,
  kPerTurn: 2,
  weightShift: 3,
  locals: '(local $wlo v128) (local $whi v128) (local $pair v128) (local $scale v128) (local $cs i32)',
  turn: [
    '(local.set $wlo (v128.load8x8_s (local.get $w)))',
    '(local.set $whi (v128.load8x8_s offset=8 (local.get $w)))',
    ...ROWS.flatMap((r) => [
      `(local.set $pair (v128.load32_splat (local.get $a${r})))`,
      `(local.set $acc${r}lo (i32x4.add (local.get $acc${r}lo) (i32x4.dot_i16x8_s (local.get $pair) (local.get $wlo))))`,
      `(local.set $acc${r}hi (i32x4.add (local.get $acc${r}hi) (i32x4.dot_i16x8_s (local.get $pair) (local.get $whi))))`,
    ]),
  ],
  store: (r) => [
    '(local.set $cs (i32.add (local.get $columnScales) (i32.shl (local.get $column) (i32.const 2))))',
    `(local.set $scale (f32x4.splat (f32.load (i32.add (local.get $rowScales) (i32.shl (i32.add (local.get $row) (i32.const ${r})) (i32.const 2))))))`,
    `(v128.store align=4 (local.get $dest) (f32x4.mul (f32x4.convert_i32x4_s (local.get $acc${r}lo)) (f32x4.mul (v128.load align=4 (local.get $cs)) (local.get $scale))))`,
    `(v128.store offset=16 align=4 (local.get $dest) (f32x4.mul (f32x4.convert_i32x4_s (local.get $acc${r}hi)) (f32x4.mul (v128.load offset=16 align=4 (local.get $cs)) (local.get $scale))))`,
  ],
};

/**
 * gemm_f32(x, m, k, weights, n, out, rowBegin, rowEnd, columnBegin, columnEnd):
 * out = x · w in float32, w packed per block of 8 columns as [N/8][K][8]:
 * per input row, the block's 8 weights in two loads, each row's value
 * splatted, eight multiplies and adds (baseline SIMD128 has no fused
 * multiply-add), summed in the order of k.
 */
const F32_PRODUCT: TiledProduct = {
  name: 'gemm_f32',
  params: ['$x', '$m', '$k', '$weights', '$n', '$out'],
  activations: '$x',
  activationBytes: 4,
  kPerTurn: 1,
  weightShift: 5,
  locals: '(local $wlo v128) (local $whi v128) (local $value v128)',
  turn: [
    '(local.set $wlo (v128.load (local.get $w)))',
    '(local.set $whi (v128.load offset=16 (local.get $w)))',
    ...ROWS.flatMap((r) => [
      `(local.set $value (v128.load32_splat (local.get $a${r})))`,
      `(local.set $acc${r}lo (f32x4.add (local.get $acc${r}lo) (f32x4.mul (local.get $value) (local.get $wlo))))`,
      `(local.set $acc${r}hi (f32x4.add (local.get $acc${r}hi) (f32x4.mul (local.get $value) (local.get $whi))))`,
    ]),
  ],
  store: (r) => [
    `(v128.store align=4 (local.get $dest) (local.get $acc${r}lo))`,
    `(v128.store offset=16 align=4 (local.get $dest) (local.get $acc${r}hi))`,
  ],
};

/**
 * The kernel `product` describes, for rows rowBegin..rowEnd-1 and columns
 * columnBegin..columnEnd-1 of the [m, n] output (n and the column bounds
 * multiples of 8, k of 8), so that threads can share one product by rows, or
 * by columns where it has few rows.
 *
 * One turn of the inner loop per input row (or pair), because V8's optimizing
 * tier schedules every load of a turn ahead of its arithmetic: at four pairs a
 * turn the loaded values outnumbered the 16 vector registers and the
 * accumulators went to the stack (75 stack moves per 64 dots), at one there
 * are none and V8 unrolls the loop itself; the q8 kernel ran at 66 GOP/s
 * instead of 44.
 */
export function tiledProduct(product: TiledProduct): string {
  const accumulators = ROWS.flatMap((r) => [`$acc${r}lo`, `$acc${r}hi`]);
  const locals = [
    ...accumulators.map((a) => `(local ${a} v128)`),
    ...ROWS.map((r) => `(local $a${r} i32)`),
    product.locals,
    '(local $blockStart i32) (local $blockEnd i32) (local $column i32) (local $row i32) (local $turns i32) (local $w i32) (local $wBlock i32)',
    '(local $rowBytes i32) (local $last i32) (local $dest i32) (local $blockBytes i32) (local $touchEnd i32)',
  ].join(' ');
  const params = [...product.params, '$rowBegin', '$rowEnd', '$columnBegin', '$columnEnd'].map((p) => `(param ${p} i32)`).join(' ');
  const advance = [
    ...ROWS.map((r) => `(local.set $a${r} (i32.add (local.get $a${r}) (i32.const ${product.kPerTurn * product.activationBytes})))`),
    `(local.set $w (i32.add (local.get $w) (i32.const ${product.kPerTurn << product.weightShift})))`,
  ];
  // Rows past the end read the last row again (never out of bounds) and are not stored.
  const rowPointers = ROWS.map(
    (r) =>
      `(local.set $a${r} (i32.add (local.get ${product.activations}) (i32.mul (select (i32.add (local.get $row) (i32.const ${r})) (local.get $last) ` +
      `(i32.lt_u (i32.add (local.get $row) (i32.const ${r})) (local.get $m))) (local.get $rowBytes))))`,
  );
  const stores = ROWS.map(
    (r) => `(if (i32.lt_u (i32.add (local.get $row) (i32.const ${r})) (local.get $rowEnd)) (then
          (local.set $dest (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (i32.add (local.get $row) (i32.const ${r})) (local.get $n)) (local.get $column)) (i32.const 2))))
          ${product.store(r).join('\n          ')}))`,
  );
  return `  (func (export "${product.name}") ${params}
    ${locals}
    (local.set $rowBytes (i32.mul (local.get $k) (i32.const ${product.activationBytes})))
    (local.set $last (i32.sub (local.get $m) (i32.const 1)))
    ;; A block of 8 columns holds k input rows of 2^${product.weightShift} bytes.
    (local.set $blockBytes (i32.shl (local.get $k) (i32.const ${product.weightShift})))
    (local.set $blockStart (local.get $rowBegin))
    (block $blocksDone (loop $blocks
      (br_if $blocksDone (i32.ge_u (local.get $blockStart) (local.get $rowEnd)))
      (local.set $blockEnd (select (i32.add (local.get $blockStart) (i32.const ${ROW_BLOCK})) (local.get $rowEnd)
        (i32.lt_u (i32.add (local.get $blockStart) (i32.const ${ROW_BLOCK})) (local.get $rowEnd))))
      ;; Column c's block starts c / 8 blocks in.
      (local.set $column (local.get $columnBegin))
      (local.set $wBlock (i32.add (local.get $weights) (i32.mul (i32.shr_u (local.get $columnBegin) (i32.const 3)) (local.get $blockBytes))))
      (block $columnsDone (loop $columns
        (br_if $columnsDone (i32.ge_u (local.get $column) (local.get $columnEnd)))
        (if (i32.lt_u (i32.add (local.get $column) (i32.const ${TILE_COLUMNS})) (local.get $columnEnd)) (then
          (local.set $w (i32.add (local.get $wBlock) (local.get $blockBytes)))
          (local.set $touchEnd (i32.add (local.get $w) (local.get $blockBytes)))
          (block $touched (loop $touch
            (br_if $touched (i32.ge_u (local.get $w) (local.get $touchEnd)))
            (drop (i32.load (local.get $w)))
            (local.set $w (i32.add (local.get $w) (i32.const 64)))
            (br $touch)))))
        (local.set $row (local.get $blockStart))
        (block $tilesDone (loop $tiles
          (br_if $tilesDone (i32.ge_u (local.get $row) (local.get $blockEnd)))
          ${accumulators.map((a) => `(local.set ${a} (v128.const i32x4 0 0 0 0))`).join('\n          ')}
          ${rowPointers.join('\n          ')}
          (local.set $w (local.get $wBlock))
          (local.set $turns (i32.div_u (local.get $k) (i32.const ${product.kPerTurn})))
          (block $turnsDone (loop $turn
            (br_if $turnsDone (i32.eqz (local.get $turns)))
            ${[...product.turn, ...advance].join('\n            ')}
            (local.set $turns (i32.sub (local.get $turns) (i32.const 1)))
            (br $turn)))
          ${stores.join('\n          ')}
          (local.set $row (i32.add (local.get $row) (i32.const ${TILE_ROWS})))
          (br $tiles)))
        (local.set $wBlock (i32.add (local.get $wBlock) (local.get $blockBytes)))
        (local.set $column (i32.add (local.get $column) (i32.const ${TILE_COLUMNS})))
        (br $columns)))
      (local.set $blockStart (local.get $blockEnd))
      (br $blocks)))
  )`;
}
