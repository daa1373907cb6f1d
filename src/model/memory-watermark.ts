import * as tf from '@tensorflow/tfjs-core';

/**
 * The highest backend tensor memory reached while `run` executes, weights
 * included. The engine counts every new tensor in `trackTensor`, so wrapping
 * it for the span of a synchronous forward pass sees each allocation, with
 * no sample points in the math and none of `tf.profile`'s cost (it records
 * every kernel and awaits its timing). `run` must be synchronous: another
 * batch's tensors created while it is suspended would count as its own.
 */
export function measurePeakBytes<T>(run: () => T): { readonly result: T; readonly peakBytes: number } {
  const engine = tf.engine();
  const track = engine.trackTensor;
  let peakBytes = engine.state.numBytes;
  engine.trackTensor = function (this: typeof engine, ...args: Parameters<typeof track>) {
    track.apply(this, args);
    if (this.state.numBytes > peakBytes) peakBytes = this.state.numBytes;
  };
  try {
    return { result: run(), peakBytes };
  } finally {
    engine.trackTensor = track;
  }
}
