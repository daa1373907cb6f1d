/**
 * Where a forward pass spends its time, kernel by kernel: one warm-up call, then the set embedded under
 * `tf.profile`. On wasm and cpu a kernel's time is its wall time (the kernels run synchronously, helper
 * threads included), so the shares are those of the unprofiled run.
 *
 *   npx tsx scripts/bench/profile.ts --model weights/bench-random-q8 --dtype q8 --set a --fraction 0.25
 */
import { parseArgs } from 'node:util';
import type { BackendName } from '../../src/backends/select.js';
import { loadEmbedder } from '../../src/embedder.js';
import type { Dtype } from '../../src/model/projection.js';
import { profileKernels } from '../gpu-check/kernel-profile.js';
import { loadSet, type SetName } from './sets.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'weights/bench-random' },
    backend: { type: 'string', default: 'wasm' },
    dtype: { type: 'string', default: 'fp32' },
    set: { type: 'string', default: 'a' },
    fraction: { type: 'string', default: '0.25' },
    'max-batch-tokens': { type: 'string' },
    top: { type: 'string', default: '12' },
  },
});

const embedder = await loadEmbedder(values.model, { backend: values.backend as BackendName, dtype: values.dtype as Dtype });
const texts = loadSet(values.set as SetName, Number(values.fraction));
const embedOptions = values['max-batch-tokens'] === undefined ? {} : { maxBatchTokens: Number(values['max-batch-tokens']) };
await embedder.embed(texts.slice(0, 2), embedOptions);
const { kernels, kernelMs, wallMs } = await profileKernels(() => embedder.embed(texts, embedOptions));
await embedder.dispose();

console.log(`${texts.length} texts, ${values.backend}, ${values.dtype}: ${wallMs.toFixed(0)} ms, ${kernelMs.toFixed(0)} ms in kernels`);
for (const { kernel, calls, ms } of kernels.slice(0, Number(values.top))) {
  console.log(`${kernel.padEnd(28)} ${ms.toFixed(0).padStart(8)} ms ${String(calls).padStart(7)} calls ${((100 * ms) / kernelMs).toFixed(1).padStart(5)}%`);
}
