import * as tf from '@tensorflow/tfjs-core';

/**
 * The highest backend tensor memory seen at the sample points. The transformer
 * samples where each layer's memory peaks (score blocks alive, SwiGLU
 * projection alive), which is cheap, unlike `tf.profile`, which reads back
 * every kernel's output.
 */
let peakBytes = 0;

export function sampleMemory(): void {
  peakBytes = Math.max(peakBytes, tf.memory().numBytes);
}

/** Returns the peak since the last reset and starts a new watch. */
export function takePeakMemory(): number {
  sampleMemory();
  const peak = peakBytes;
  peakBytes = 0;
  return peak;
}
