/**
 * Times the fused rotary attention kernel at several tile sizes on the
 * active adapter, for the shapes the model runs (B, T, 12 heads of 64),
 * and checks each against the default tiles' output. Run on its own:
 * `node app/scripts/gpu-check/attention-sweep.js` in the GPU bundle, or
 * `npx tsx scripts/gpu-check/attention-sweep.ts [--quick]` in a clone.
 */
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { selectBackend } from '../../src/backends/select.js';
import { FusedAttentionProgram, keyTileFor, QUERY_TILE, type AttentionTiles } from '../../src/backends/webgpu/attention-program.js';
import { webGpuAdapter } from '../../src/backends/webgpu/device.js';
import { runWebGpuProgram, webGpuWorkgroupBytes } from '../../src/backends/webgpu/kernels.js';
import { secondsPerRun } from '../bench/roofline.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' } } });
await selectBackend('webgpu');
const adapter = webGpuAdapter()!;
const quick = values.quick === true || adapter.software;
const workgroupBytes = webGpuWorkgroupBytes();
console.log(`attention sweep on ${adapter.description}: workgroup memory ${workgroupBytes} bytes`);

const HEADS = 12;
const HD = 64;
const shapes: [number, number][] = quick ? [[1, 256]] : [[32, 512], [8, 2048], [1, 8192]];
const defaults: AttentionTiles = { queryTile: QUERY_TILE, keyTile: keyTileFor(HD, workgroupBytes) };
const candidates: AttentionTiles[] = [defaults];
for (const queryTile of [64, 128, 256]) {
  for (const keyTile of [16, 32]) {
    if (keyTile * (2 * HD * 4 + 4) > workgroupBytes) continue;
    if (!candidates.some((c) => c.queryTile === queryTile && c.keyTile === keyTile)) candidates.push({ queryTile, keyTile });
  }
}

function run(tiles: AttentionTiles, inputs: tf.Tensor[], shape: [number, number, number, number]): tf.Tensor {
  const program = new FusedAttentionProgram(shape, tiles);
  return runWebGpuProgram(program, inputs, [{ type: 'float32', data: [1 / Math.sqrt(HD)] }]);
}

for (const [B, T] of shapes) {
  const shape: [number, number, number, number] = [B, T, HEADS, HD];
  const [q, k, v] = [1, 2, 3].map((seed) => tf.randomNormal(shape, 0, 1, 'float32', seed));
  const angles = tf.randomUniform([1, T, HD / 2], 0, 6.28, 'float32', 4);
  const inputs = [q, k, v, tf.cos(angles), tf.sin(angles), tf.zeros([B, 1, 1, T])];
  const reference = run(defaults, inputs, shape);
  const expected = await reference.data();
  const flops = 4 * B * HEADS * T * T * HD;
  for (const tiles of candidates) {
    const once = run(tiles, inputs, shape);
    const actual = await once.data();
    once.dispose();
    let maxDiff = 0;
    for (let i = 0; i < actual.length; i++) maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]) || (Number.isNaN(actual[i]) ? Infinity : 0));
    const seconds = await secondsPerRun(() => run(tiles, inputs, shape), 2, quick ? 0 : 0.3);
    const ms = seconds * 1000;
    console.log(
      `[${shape}] queryTile ${String(tiles.queryTile).padStart(3)} keyTile ${String(tiles.keyTile).padStart(2)}: ` +
        `${ms.toFixed(2).padStart(8)} ms ${(flops / seconds / 1e9).toFixed(0).padStart(6)} GFLOP/s, max diff ${maxDiff.toExponential(1)}`,
    );
  }
  tf.dispose([...inputs, angles, reference]);
}
