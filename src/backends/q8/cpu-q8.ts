import * as tf from '@tensorflow/tfjs-core';
import { Q8_MATMUL } from '../../model/projection.js';
import { q8MatMulReference } from '../../weights/q8-codes.js';

interface CpuBackendLike {
  readSync(dataId: object): ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

let installed = false;

/**
 * The q8 product on the `cpu` backend, in plain JavaScript: the exact
 * reference the wasm kernel is tested against, so a q8 model gives the same
 * vectors on both. It is as slow as the cpu backend's own products; it is
 * here so that q8 runs on every backend that can hold it.
 */
export function installCpuQ8(): void {
  if (installed) return;
  tf.registerKernel({
    kernelName: Q8_MATMUL,
    backendName: 'cpu',
    kernelFunc: (({ inputs, backend }: { inputs: { x: tf.TensorInfo; codes: tf.TensorInfo; scales: tf.TensorInfo }; backend: CpuBackendLike }) => {
      const [M, K] = inputs.x.shape;
      const N = inputs.scales.shape[0];
      const words = backend.readSync(inputs.codes.dataId);
      const weight = {
        codes: new Int8Array(words.buffer, words.byteOffset, K * N),
        scales: backend.readSync(inputs.scales.dataId) as Float32Array,
      };
      const out = q8MatMulReference(backend.readSync(inputs.x.dataId) as Float32Array, M, K, weight, N);
      return backend.makeTensorInfo([M, N], 'float32', out);
    }) as unknown as tf.KernelFunc,
  });
  installed = true;
}
