/** x [M, K] · w [K, N] as the float32 kernel computes it: each product rounded to float32, then added in the order of k. */
export function f32MatMulReference(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float32Array {
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum = Math.fround(sum + Math.fround(x[m * K + k] * w[k * N + n]));
      out[m * N + n] = sum;
    }
  }
  return out;
}
