import { buildWasm } from '../../scripts/build-wasm.js';

/** vitest's global set-up: the q8 kernels assembled from their current source, so that a test run alone needs no build first. */
export default async function setup(): Promise<void> {
  await buildWasm();
}
