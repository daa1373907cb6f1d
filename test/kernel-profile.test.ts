import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { profileKernels } from '../scripts/gpu-check/kernel-profile.js';
import { useBackend } from './helpers/backend.js';

beforeAll(() => useBackend('cpu'));

it('sums each kernel over its calls, the costliest first', async () => {
  const a = tf.randomNormal([256, 256]);
  const profile = await profileKernels(async () => {
    const products = tf.tidy(() => tf.add(tf.matMul(tf.matMul(a, a), a), a));
    await products.data();
    products.dispose();
  });
  a.dispose();
  const calls = Object.fromEntries(profile.kernels.map((k) => [k.kernel, k.calls]));
  expect(calls).toEqual({ BatchMatMul: 2, Add: 1 });
  expect(profile.kernels[0].kernel).toBe('BatchMatMul');
  expect(profile.kernelMs).toBeCloseTo(profile.kernels.reduce((sum, k) => sum + k.ms, 0), 9);
  expect(profile.kernelMs).toBeGreaterThan(0);
  expect(profile.wallMs).toBeGreaterThanOrEqual(profile.kernels[0].ms);
});
