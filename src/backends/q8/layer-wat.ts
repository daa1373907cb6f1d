/**
 * The WebAssembly text of the layer kernels that sit between the products:
 * residual LayerNorm and rotary attention, and the loader's check for NaN
 * and infinite weights, in SIMD128
 * over the wasm backend's heap, in the module `gemm-wat.ts` assembles. At the
 * small batches a service sees these are most of a forward pass after the
 * products: in JavaScript a LayerNorm costs 4–6 ns a value and tfjs's batched
 * attention products are a plain loop, 1 ns a multiply-add.
 *
 * Every address is a byte address in the imported memory; widths are
 * multiples of 4 floats (the kernels' callers check), so each loop moves
 * whole vectors.
 */


export function layerKernelsWat(): string {
  return [layerNorm(), attention(), swiglu(), firstNonFinite()].join('\n');
}

const splat = (value: number) => `(f32x4.splat (f32.const ${value}))`;
/** The sum of a float32 vector's lanes. */
const laneSum = (v: string) =>
  `(f32.add (f32.add (f32x4.extract_lane 0 ${v}) (f32x4.extract_lane 1 ${v})) (f32.add (f32x4.extract_lane 2 ${v}) (f32x4.extract_lane 3 ${v})))`;
/** A float32 vector's upper two lanes as float64. */
const promoteHigh = (v: string) => `(f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 ${v} ${v}))`;

/** exp's constants, each a local set once per call (a splat in the loop costs three instructions per use). */
const EXP_CONSTANTS = {
  low: -87.33654,
  log2e: 1.44269504089,
  rounding: 12582912,
  ln2High: 0.693359375,
  ln2Low: -2.1219444e-4,
  p0: 1.98756915e-4,
  p1: 1.3981999507e-3,
  p2: 8.3334519073e-3,
  p3: 4.1665795894e-2,
  p4: 1.6666665459e-1,
  p5: 5.0000001201e-1,
  one: 1,
} as const;
const constant = (name: keyof typeof EXP_CONSTANTS) => `(local.get $exp_${name})`;

/** The locals {@link expInto} uses; a function that exponentiates declares them and runs {@link EXP_SETUP} first. */
const EXP_LOCALS = [
  '(local $expX v128) (local $expN v128) (local $expR v128) (local $expZero v128) (local $expP v128) (local $exp_bias v128)',
  ...Object.keys(EXP_CONSTANTS).map((name) => `(local $exp_${name} v128)`),
].join(' ');
const EXP_SETUP = [
  ...Object.entries(EXP_CONSTANTS).map(([name, value]) => `(local.set $exp_${name} ${splat(value)})`),
  // The integer bits of 1.5·2²³, less the exponent's bias.
  `(local.set $exp_bias (i32x4.sub (local.get $exp_rounding) (i32x4.splat (i32.const 127))))`,
].join('\n    ');

/**
 * Statements setting `target` (a v128 local) to e^x lane by lane, x a vector
 * expression; written out in place, since a call per vector cost V8 more
 * than the arithmetic. Cephes' single-precision method: x = n·ln 2 + r with
 * |r| ≤ ln 2 / 2 (ln 2 in two parts, so r is exact), a degree-6 polynomial
 * for e^r, and 2^n made in the exponent bits. For x ≤ 0, the softmax's
 * scores less their largest (the only use): within 1 ulp of e^x (measured
 * over 2²⁰ values of −87.3..0), exactly 0 below −87.34, where float32's exp
 * underflows, and NaN for NaN.
 */
function expInto(target: string, x: string): string {
  let poly = constant('p0');
  for (const c of ['p1', 'p2', 'p3', 'p4', 'p5'] as const) poly = `(f32x4.add (f32x4.mul ${poly} (local.get $expR)) ${constant(c)})`;
  return `(local.set $expX ${x})
    (local.set $expZero (f32x4.lt (local.get $expX) ${constant('low')}))
    ;; pmax is one instruction and keeps a NaN in x (wasm's max is five).
    (local.set $expX (f32x4.pmax (local.get $expX) ${constant('low')}))
    ;; n = round(x·log₂e): adding 1.5·2²³ leaves the rounded integer in the low mantissa bits.
    (local.set $expN (f32x4.add (f32x4.mul (local.get $expX) ${constant('log2e')}) ${constant('rounding')}))
    (local.set $expP (f32x4.sub (local.get $expN) ${constant('rounding')}))
    (local.set $expR (f32x4.sub (f32x4.sub (local.get $expX) (f32x4.mul (local.get $expP) ${constant('ln2High')})) (f32x4.mul (local.get $expP) ${constant('ln2Low')})))
    (local.set $expP ${poly})
    (local.set $expP (f32x4.add (f32x4.add (f32x4.mul (f32x4.mul (local.get $expP) (local.get $expR)) (local.get $expR)) (local.get $expR)) ${constant('one')}))
    ;; 2^n: n + 127 in the exponent field (−126 ≤ n ≤ 0 here).
    (local.set ${target} (v128.andnot
      (f32x4.mul (local.get $expP) (i32x4.shl (i32x4.sub (local.get $expN) (local.get $exp_bias)) (i32.const 23)))
      (local.get $expZero)))`;
}

/**
 * layer_norm(x, residual, gamma, beta, rows, width, epsilon, out): each row
 * of `LayerNorm(x + residual)·gamma + beta` (biased variance). The sum is
 * rounded to float32 as tfjs's add rounds it; mean, variance and the affine
 * step are float64, rounded once into `out` (which may not alias the inputs).
 */
function layerNorm(): string {
  const loop = (name: string, body: string) => `(local.set $p (i32.const 0))
      (block $${name}Done (loop $${name}
        (br_if $${name}Done (i32.ge_u (local.get $p) (local.get $rowBytes)))
        ${body}
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $${name})))`;
  const at = (base: string) => `(i32.add (local.get ${base}) (local.get $p))`;
  const centred = (half: string) => `(f64x2.sub ${half} (local.get $mean))`;
  const affine = (v: string, g: string, b: string) => `(f64x2.add (f64x2.mul (f64x2.mul ${v} (local.get $inverse)) ${g}) ${b})`;
  return `  (func (export "layer_norm") (param $x i32) (param $residual i32) (param $gamma i32) (param $beta i32)
    (param $rows i32) (param $width i32) (param $epsilon f64) (param $out i32)
    (local $row i32) (local $p i32) (local $rowBytes i32) (local $v v128) (local $g v128) (local $b v128) (local $lo v128) (local $hi v128)
    (local $sum v128) (local $mean v128) (local $inverse v128) (local $n f64)
    (local.set $rowBytes (i32.shl (local.get $width) (i32.const 2)))
    (local.set $n (f64.convert_i32_u (local.get $width)))
    (block $rowsDone (loop $rowLoop
      (br_if $rowsDone (i32.ge_u (local.get $row) (local.get $rows)))
      (local.set $sum (v128.const i64x2 0 0))
      ${loop('add', `(local.set $v (f32x4.add (v128.load align=4 ${at('$x')}) (v128.load align=4 ${at('$residual')})))
        (v128.store align=4 ${at('$out')} (local.get $v))
        (local.set $sum (f64x2.add (local.get $sum) (f64x2.add (f64x2.promote_low_f32x4 (local.get $v)) ${promoteHigh('(local.get $v)')})))`)}
      (local.set $mean (f64x2.splat (f64.div (f64.add (f64x2.extract_lane 0 (local.get $sum)) (f64x2.extract_lane 1 (local.get $sum))) (local.get $n))))
      (local.set $sum (v128.const i64x2 0 0))
      ${loop('square', `(local.set $v (v128.load align=4 ${at('$out')}))
        (local.set $lo ${centred('(f64x2.promote_low_f32x4 (local.get $v))')})
        (local.set $hi ${centred(promoteHigh('(local.get $v)'))})
        (local.set $sum (f64x2.add (local.get $sum) (f64x2.add (f64x2.mul (local.get $lo) (local.get $lo)) (f64x2.mul (local.get $hi) (local.get $hi)))))`)}
      (local.set $inverse (f64x2.splat (f64.div (f64.const 1) (f64.sqrt (f64.add
        (f64.div (f64.add (f64x2.extract_lane 0 (local.get $sum)) (f64x2.extract_lane 1 (local.get $sum))) (local.get $n))
        (local.get $epsilon))))))
      ${loop('scale', `(local.set $v (v128.load align=4 ${at('$out')}))
        (local.set $g (v128.load align=4 (i32.add (local.get $gamma) (local.get $p))))
        (local.set $b (v128.load align=4 (i32.add (local.get $beta) (local.get $p))))
        (local.set $lo ${affine(centred('(f64x2.promote_low_f32x4 (local.get $v))'), '(f64x2.promote_low_f32x4 (local.get $g))', '(f64x2.promote_low_f32x4 (local.get $b))')})
        (local.set $hi ${affine(centred(promoteHigh('(local.get $v)')), promoteHigh('(local.get $g)'), promoteHigh('(local.get $b)'))})
        (v128.store align=4 ${at('$out')} (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (local.get $lo)) (f32x4.demote_f64x2_zero (local.get $hi))))`)}
      (local.set $x (i32.add (local.get $x) (local.get $rowBytes)))
      (local.set $residual (i32.add (local.get $residual) (local.get $rowBytes)))
      (local.set $out (i32.add (local.get $out) (local.get $rowBytes)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rowLoop)))
  )`;
}

/**
 * attention(q, k, v, cos, sin, tableRows, bias, B, T, H, hd, scale, out, scratch):
 * rotary self-attention in the projections' layout. q, k, v and out
 * [B, T, H, hd]; tables [R, T, hd/2] (R = 1, or B: one per row); bias [B, T],
 * added to each key's score; hd a multiple of 8. Per (sequence, head): its
 * keys, and its queries times `scale`, rotated (rotate-half, rounded as
 * tfjs's ops round them) into scratch; then per query the scores, their
 * softmax (keys whose weight underflows to 0, the padded ones, are skipped)
 * and the weighted sum of the values, in float32.
 * Scratch: 4·(T·hd + T′·hd + 2·T′ + hd) bytes, 16-byte aligned, T′ = T
 * rounded up to a multiple of 4.
 */
/** The four keys of a block. */
const KEYS = [0, 1, 2, 3] as const;
/** The 16 bytes `bytes` (0–15 of a, 16–31 of b) of two vectors. */
const LANES = (bytes: string, a: string, b: string) => `(i8x16.shuffle ${bytes} (local.get ${a}) (local.get ${b}))`;

function attention(): string {
  /** A loop over `$counter` from its current value up to `limit` (exclusive) in steps of `step`. */
  const loop = (label: string, counter: string, limit: string, step: number | string, body: string) => `(block $${label}Done (loop $${label}
          (br_if $${label}Done (i32.ge_u (local.get ${counter}) ${limit}))
          ${body}
          (local.set ${counter} (i32.add (local.get ${counter}) ${typeof step === 'number' ? `(i32.const ${step})` : step}))
          (br $${label})))`;
  const get = (name: string) => `(local.get ${name})`;
  const add = (...terms: string[]) => terms.reduce((a, b) => `(i32.add ${a} ${b})`);
  const load = (address: string) => `(v128.load align=4 ${address})`;
  const rotate = (source: string, target: string, factor: string | undefined) => {
    const scaled = (v: string) => (factor === undefined ? v : `(f32x4.mul ${v} ${factor})`);
    return `(local.set $x1 ${load(add(get(source), get('$from'), get('$j')))})
            (local.set $x2 ${load(add(get(source), get('$from'), get('$halfBytes'), get('$j')))})
            (v128.store align=4 ${add(get(target), get('$to'), get('$j'))}
              ${scaled('(f32x4.sub (f32x4.mul (local.get $x1) (local.get $c)) (f32x4.mul (local.get $x2) (local.get $s)))')})
            (v128.store align=4 ${add(get(target), get('$to'), get('$halfBytes'), get('$j'))}
              ${scaled('(f32x4.add (f32x4.mul (local.get $x2) (local.get $c)) (f32x4.mul (local.get $x1) (local.get $s)))')})`;
  };
  return `  (func (export "attention") (param $q i32) (param $k i32) (param $v i32) (param $cos i32) (param $sin i32) (param $tableRows i32)
    (param $bias i32) (param $B i32) (param $T i32) (param $H i32) (param $hd i32) (param $scale f32) (param $out i32) (param $scratch i32)
    (local $b i32) (local $h i32) (local $t i32) (local $i i32) (local $j i32) (local $d i32)
    (local $rowBytes i32) (local $halfBytes i32) (local $stride i32) (local $Q i32) (local $K i32) (local $S i32) (local $A i32) (local $paddedT i32)
    (local $angles i32) (local $from i32) (local $to i32) (local $query i32) (local $key i32) (local $value i32) (local $biasRow i32)
    (local $c v128) (local $s v128) (local $x1 v128) (local $x2 v128) (local $factor v128) (local $acc v128) (local $weight v128) (local $shift v128)
    (local $top f32) (local $w f32) (local $tops v128) (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) ${EXP_LOCALS}
    (local.set $rowBytes (i32.shl (local.get $hd) (i32.const 2)))
    (local.set $halfBytes (i32.shl (local.get $hd) (i32.const 1)))
    (local.set $stride (i32.mul (local.get $H) (local.get $rowBytes)))
    (local.set $paddedT (i32.and (i32.add (local.get $T) (i32.const 3)) (i32.const -4)))
    (local.set $Q (local.get $scratch))
    (local.set $K (i32.add (local.get $Q) (i32.mul (local.get $T) (local.get $rowBytes))))
    (local.set $S (i32.add (local.get $K) (i32.mul (local.get $paddedT) (local.get $rowBytes))))
    (local.set $biasRow (i32.add (local.get $S) (i32.shl (local.get $paddedT) (i32.const 2))))
    (local.set $A (i32.add (local.get $biasRow) (i32.shl (local.get $paddedT) (i32.const 2))))
    (local.set $factor (f32x4.splat (local.get $scale)))
    ${EXP_SETUP}
    ;; Keys past the last are zeros, so a block of four keys reads no memory it does not own; their bias is −Inf.
    (local.set $d (i32.mul (local.get $T) (local.get $rowBytes)))
    ${loop('padKeys', '$d', '(i32.mul (local.get $paddedT) (local.get $rowBytes))', 16, `(v128.store align=4 ${add(get('$K'), get('$d'))} (v128.const i32x4 0 0 0 0))`)}
    (local.set $j (local.get $T))
    ${loop('padBias', '$j', get('$paddedT'), 1, `(f32.store (i32.add (local.get $biasRow) (i32.shl (local.get $j) (i32.const 2))) (f32.const -inf))`)}
    (block $batchDone (loop $batch
      (br_if $batchDone (i32.ge_u (local.get $b) (local.get $B)))
      ;; The sequence's key bias, where its padded lanes follow it.
      (memory.copy (local.get $biasRow) (i32.add (local.get $bias) (i32.shl (i32.mul (local.get $b) (local.get $T)) (i32.const 2))) (i32.shl (local.get $T) (i32.const 2)))
      (local.set $h (i32.const 0))
      ${loop('heads', '$h', get('$H'), 1, `
        ;; The head's rotated queries and keys, [T, hd] each.
        (local.set $t (i32.const 0))
        ${loop('rotate', '$t', get('$T'), 1, `
          (local.set $angles (i32.mul (i32.add (i32.mul (select (i32.const 0) (local.get $b) (i32.eq (local.get $tableRows) (i32.const 1))) (local.get $T)) (local.get $t)) (local.get $halfBytes)))
          (local.set $from (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $T)) (local.get $t)) (local.get $stride)) (i32.mul (local.get $h) (local.get $rowBytes))))
          (local.set $to (i32.mul (local.get $t) (local.get $rowBytes)))
          (local.set $j (i32.const 0))
          ${loop('half', '$j', get('$halfBytes'), 16, `
            (local.set $c ${load(add(get('$cos'), get('$angles'), get('$j')))})
            (local.set $s ${load(add(get('$sin'), get('$angles'), get('$j')))})
            ${rotate('$q', '$Q', get('$factor'))}
            ${rotate('$k', '$K', undefined)}`)}`)}
        (local.set $i (i32.const 0))
        ${loop('queries', '$i', get('$T'), 1, `
          (local.set $query (i32.add (local.get $Q) (i32.mul (local.get $i) (local.get $rowBytes))))
          ;; Scores of four keys at a time: one load of the query's values for four products, the four sums in one vector.
          (local.set $tops (v128.const f32x4 -inf -inf -inf -inf))
          (local.set $j (i32.const 0))
          ${loop('scores', '$j', get('$paddedT'), 4, `
            (local.set $key (i32.add (local.get $K) (i32.mul (local.get $j) (local.get $rowBytes))))
            ${KEYS.map((n) => `(local.set $acc${n} (v128.const i32x4 0 0 0 0))`).join(' ')}
            (local.set $d (i32.const 0))
            ${loop('dot', '$d', get('$rowBytes'), 16, `(local.set $x1 ${load(add(get('$query'), get('$d')))})
              ${KEYS.map((n) => `(local.set $acc${n} (f32x4.add (local.get $acc${n}) (f32x4.mul (local.get $x1) ${load(add(get('$key'), n === 0 ? '(i32.const 0)' : `(i32.mul (local.get $rowBytes) (i32.const ${n}))`, get('$d')))})))`).join('\n              ')}`)}
            (local.set $x1 (f32x4.add ${LANES('0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23', '$acc0', '$acc1')} ${LANES('8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31', '$acc0', '$acc1')}))
            (local.set $x2 (f32x4.add ${LANES('0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23', '$acc2', '$acc3')} ${LANES('8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31', '$acc2', '$acc3')}))
            (local.set $acc (f32x4.add (f32x4.add ${LANES('0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23', '$x1', '$x2')} ${LANES('8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31', '$x1', '$x2')})
              ${load(add(get('$biasRow'), '(i32.shl (local.get $j) (i32.const 2))'))}))
            (v128.store align=4 ${add(get('$S'), '(i32.shl (local.get $j) (i32.const 2))')} (local.get $acc))
            (local.set $tops (f32x4.max (local.get $tops) (local.get $acc)))`)}
          (local.set $top (f32.max (f32.max (f32x4.extract_lane 0 (local.get $tops)) (f32x4.extract_lane 1 (local.get $tops)))
            (f32.max (f32x4.extract_lane 2 (local.get $tops)) (f32x4.extract_lane 3 (local.get $tops)))))
          ;; Weights e^(score − top), and their sum.
          (local.set $shift (f32x4.splat (local.get $top)))
          (local.set $acc (v128.const i32x4 0 0 0 0))
          (local.set $j (i32.const 0))
          ${loop('weights', '$j', `(i32.shl (local.get $paddedT) (i32.const 2))`, 16, `
            ${expInto('$weight', `(f32x4.sub ${load(add(get('$S'), get('$j')))} (local.get $shift))`)}
            (v128.store align=4 ${add(get('$S'), get('$j'))} (local.get $weight))
            (local.set $acc (f32x4.add (local.get $acc) (local.get $weight)))`)}
          (local.set $d (i32.const 0))
          ${loop('clear', '$d', get('$rowBytes'), 16, `(v128.store align=4 ${add(get('$A'), get('$d'))} (v128.const i32x4 0 0 0 0))`)}
          ;; Values four keys at a time while four remain (a block of zero weights, padding, is skipped), then one at a time.
          (local.set $j (i32.const 0))
          ${loop('valueBlocks', '$j', '(i32.and (local.get $T) (i32.const -4))', 4, `
            (local.set $weight ${load(add(get('$S'), '(i32.shl (local.get $j) (i32.const 2))'))})
            (if (v128.any_true (local.get $weight)) (then
              ${KEYS.map((n) => `(local.set $acc${n} (f32x4.splat (f32x4.extract_lane ${n} (local.get $weight))))`).join(' ')}
              (local.set $value (i32.add (local.get $v) (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $T)) (local.get $j)) (local.get $stride)) (i32.mul (local.get $h) (local.get $rowBytes)))))
              (local.set $d (i32.const 0))
              ;; Summed in key order, as one key at a time sums them.
              ${loop('accumulate4', '$d', get('$rowBytes'), 16, `(v128.store align=4 ${add(get('$A'), get('$d'))}
                ${KEYS.reduce((sum, n) => `(f32x4.add ${sum} (f32x4.mul (local.get $acc${n}) ${load(add(get('$value'), n === 0 ? '(i32.const 0)' : `(i32.mul (local.get $stride) (i32.const ${n}))`, get('$d')))}))`, load(add(get('$A'), get('$d'))))})`)}))`)}
          ${loop('values', '$j', get('$T'), 1, `
            (local.set $w (f32.load (i32.add (local.get $S) (i32.shl (local.get $j) (i32.const 2)))))
            (if (f32.ne (local.get $w) (f32.const 0)) (then
              (local.set $weight (f32x4.splat (local.get $w)))
              (local.set $value (i32.add (local.get $v) (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $T)) (local.get $j)) (local.get $stride)) (i32.mul (local.get $h) (local.get $rowBytes)))))
              (local.set $d (i32.const 0))
              ${loop('accumulate', '$d', get('$rowBytes'), 16, `(v128.store align=4 ${add(get('$A'), get('$d'))}
                (f32x4.add ${load(add(get('$A'), get('$d')))} (f32x4.mul (local.get $weight) ${load(add(get('$value'), get('$d')))})))`)}))`)}
          (local.set $weight (f32x4.splat (f32.div (f32.const 1) ${laneSum('(local.get $acc)')})))
          (local.set $to (i32.add (local.get $out) (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $T)) (local.get $i)) (local.get $stride)) (i32.mul (local.get $h) (local.get $rowBytes)))))
          (local.set $d (i32.const 0))
          ${loop('store', '$d', get('$rowBytes'), 16, `(v128.store align=4 ${add(get('$to'), get('$d'))} (f32x4.mul ${load(add(get('$A'), get('$d')))} (local.get $weight)))`)}`)}`)}
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $batch)))
  )`;
}

/**
 * swiglu(gate, up, count, out): `up · (gate · sigmoid(gate))` for `count`
 * floats, rounded where tfjs's composite (sigmoid, then two products) rounds.
 * sigmoid(g) from t = e^−|g| (the exp above takes x ≤ 0): 1 / (1 + t) for
 * g ≥ 0, t / (1 + t) below, so neither side overflows; NaN stays NaN. The
 * last count mod 4 values go through the same vector code one lane at a
 * time, so every value is computed alike.
 */
function swiglu(): string {
  const body = (gate: string, up: string) => `${expInto('$t', `(f32x4.neg (f32x4.abs (local.tee $g ${gate})))`)}
      (local.set $s (f32x4.div ${constant('one')} (f32x4.add ${constant('one')} (local.get $t))))
      (local.set $s (v128.bitselect (local.get $s) (f32x4.mul (local.get $t) (local.get $s)) (f32x4.ge (local.get $g) (local.get $zero))))
      (local.set $s (f32x4.mul ${up} (f32x4.mul (local.get $g) (local.get $s))))`;
  const at = (base: string) => `(i32.add (local.get ${base}) (local.get $p))`;
  return `  (func (export "swiglu") (param $gate i32) (param $up i32) (param $count i32) (param $out i32)
    (local $p i32) (local $whole i32) (local $end i32) (local $g v128) (local $t v128) (local $s v128) (local $zero v128) ${EXP_LOCALS}
    ${EXP_SETUP}
    (local.set $zero (v128.const i32x4 0 0 0 0))
    (local.set $end (i32.shl (local.get $count) (i32.const 2)))
    (local.set $whole (i32.and (local.get $end) (i32.const -16)))
    (block $vectorsDone (loop $vectors
      (br_if $vectorsDone (i32.ge_u (local.get $p) (local.get $whole)))
      ${body(`(v128.load align=4 ${at('$gate')})`, `(v128.load align=4 ${at('$up')})`)}
      (v128.store align=4 ${at('$out')} (local.get $s))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $vectors)))
    (block $valuesDone (loop $values
      (br_if $valuesDone (i32.ge_u (local.get $p) (local.get $end)))
      ${body(`(f32x4.splat (f32.load ${at('$gate')}))`, `(f32x4.splat (f32.load ${at('$up')}))`)}
      (f32.store ${at('$out')} (f32x4.extract_lane 0 (local.get $s)))
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (br $values)))
  )`;
}

/**
 * first_non_finite(x, count): the index of the first NaN or infinity among
 * `count` floats at x (4-byte aligned), or −1. A float is not finite when
 * its exponent bits are all ones; four are tested at once, and the vector
 * that holds one is searched lane by lane.
 */
function firstNonFinite(): string {
  const exponent = '(i32x4.splat (i32.const 0x7f800000))';
  const notFinite = (bits: string) => `(i32.eq (i32.and ${bits} (i32.const 0x7f800000)) (i32.const 0x7f800000))`;
  return `  (func (export "first_non_finite") (param $x i32) (param $count i32) (result i32)
    (local $i i32) (local $whole i32) (local $mask v128)
    (local.set $mask ${exponent})
    (local.set $whole (i32.and (local.get $count) (i32.const -4)))
    (block $scanned (loop $vectors
      (br_if $scanned (i32.ge_u (local.get $i) (local.get $whole)))
      (br_if $scanned (v128.any_true (i32x4.eq (v128.and (v128.load align=4 (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))) (local.get $mask)) (local.get $mask))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $vectors)))
    ;; From the vector that holds one (or the last few values) on, one at a time.
    (block $none (loop $values
      (br_if $none (i32.ge_u (local.get $i) (local.get $count)))
      (if ${notFinite('(i32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))')} (then (return (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $values)))
    (i32.const -1)
  )`;
}
