import * as tf from '@tensorflow/tfjs-core';

/** The model's own matMul shapes ([M, K] × [K, N]) at the batch sizes it runs. */
export const ROOFLINE_SHAPES: readonly (readonly [number, number, number])[] = [
  [512, 768, 3072],
  [1024, 768, 3072],
  [2048, 768, 3072],
  [2048, 3072, 768],
  [2048, 768, 768],
];

/** A GPU fills its cores only with larger products: the batches it runs are larger too. */
export const GPU_ROOFLINE_SHAPES: readonly (readonly [number, number, number])[] = [
  ...ROOFLINE_SHAPES,
  [8192, 768, 3072],
  [8192, 3072, 768],
  [16384, 768, 3072],
];

/** The shapes to measure on a backend: the first only on a software GPU adapter, where each takes seconds. */
export function rooflineShapes(backend: string, softwareAdapter: boolean | undefined) {
  if (backend !== 'webgpu') return ROOFLINE_SHAPES;
  return softwareAdapter ? ROOFLINE_SHAPES.slice(0, 1) : GPU_ROOFLINE_SHAPES;
}

/**
 * The active backend's raw matMul rate on the model's shapes, in GFLOP/s: the
 * best of them is the roofline the model's throughput is compared with.
 */
export async function measureMatMul(shapes: readonly (readonly [number, number, number])[]): Promise<{ best: number; rates: Record<string, number> }> {
  let best = 0;
  const rates: Record<string, number> = {};
  for (const [m, k, n] of shapes) {
    const a = tf.randomNormal([m, k]);
    const b = tf.randomNormal([k, n]);
    const gflops = (2 * m * k * n) / (await secondsPerRun(() => tf.matMul(a, b))) / 1e9;
    rates[`${m}x${k}x${n}`] = gflops;
    best = Math.max(best, gflops);
    tf.dispose([a, b]);
  }
  return { best, rates };
}

/**
 * Seconds one `produce()` takes on the active backend. It runs once untimed
 * (shader compilation, heap growth), then `minReps` times, doubling until at
 * least `minSeconds` have passed, so that a fast device is timed over more
 * than its launch overhead. Only one element of the last result is read back
 * (asynchronously: WebGPU in Node has no synchronous read), since a backend
 * runs its work in order: reading whole results would time the copy to the
 * host, which on a fast GPU takes longer than the work. Every result is
 * disposed.
 */
export async function secondsPerRun(produce: () => tf.Tensor, minReps = 3, minSeconds = 0.2): Promise<number> {
  const run = async (reps: number) => {
    let last: tf.Tensor | undefined;
    for (let i = 0; i < reps; i++) {
      last?.dispose();
      last = produce();
    }
    const corner = tf.tidy(() => tf.slice(tf.reshape(last!, [-1]), [last!.size - 1], [1]));
    await corner.data();
    tf.dispose([corner, last!]);
  };
  await run(1);
  for (let reps = minReps; ; reps *= 2) {
    const start = performance.now();
    await run(reps);
    const seconds = (performance.now() - start) / 1000;
    if (seconds >= minSeconds) return seconds / reps;
  }
}
