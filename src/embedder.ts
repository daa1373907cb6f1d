import { availableParallelism, freemem, totalmem } from 'node:os';
import { basename, resolve } from 'node:path';
import { backendNamed } from './backends/backend.js';
import { selectBackend } from './backends/select.js';
import type { GpuAdapterReport } from './backends/webgpu/adapter.js';
import { wasmWeightCopies } from './backends/xnnpack-packer.js';
import { checkLoadOptions, LOAD_DEFAULTS, type LoadEmbedderOptions } from './pipeline/embed-options.js';
import { cachedModel, isHubId } from './download/model-cache.js';
import { BackendError, ConfigError, InputError } from './errors.js';
import { describe } from './options.js';
import { layoutNotice } from './model/load-model.js';
import { TextTokenizer } from './pipeline/tokenizer.js';
import { LocalRunner } from './pool/local-runner.js';
import type { BatchRunner } from './pool/runner.js';
import { Embedder, warmUp } from './embedder-core.js';
import { WorkerPoolRunner } from './pool/worker-pool.js';
import { estimateMemory } from './pipeline/memory.js';
import { availableMemory, defaultWorkerCount } from './pipeline/workers.js';
import type { NomicBertConfig } from './weights/config.js';
import { runtimeLayoutFile } from './weights/layout-cache.js';
import type { CheckedCheckpoint } from './weights/load.js';
import { openCheckpoint, readConfig, readTokenizerFiles, weightsPath } from './weights/model-folder.js';

/**
 * Loads a model onto a backend: a folder (`config.json`, `model.safetensors`,
 * `tokenizer.json`, optionally `tokenizer_config.json`), or a Hugging Face hub
 * repository id, downloaded into the cache on first use (see
 * `LoadEmbedderOptions.revision`, `offline`, `cacheDir`). A path that exists
 * is always a folder.
 *
 * @example
 * const embedder = await loadEmbedder('nomic-ai/nomic-embed-text-v1.5');
 * const { embeddings } = await embedder.embed(['hello'], { task: 'search_query' });
 * await embedder.dispose();
 */
export async function loadEmbedder(source: string, options: LoadEmbedderOptions = {}): Promise<Embedder> {
  checkLoadOptions(options);
  if (typeof source !== 'string' || source === '') throw new InputError('source', `must be a model folder or a hub repository id, got ${describe(source)}`);
  const fromHub = isHubId(source);
  if (!fromHub && options.revision !== undefined) {
    throw new InputError('revision', `applies to a hub repository id; ${source} is a folder, and a folder is never downloaded into`);
  }
  const dir = fromHub ? await cachedModel(source, options) : source;
  const modelName = basename(fromHub ? source : resolve(dir));
  const {
    backend = LOAD_DEFAULTS.backend,
    maxLength,
    rotaryScalingFactor,
    weightsFile = LOAD_DEFAULTS.weightsFile,
    layoutCache = LOAD_DEFAULTS.layoutCache,
    dtype = LOAD_DEFAULTS.dtype,
  } = options;
  const modelOptions = { weightsFile, rotary_scaling_factor: rotaryScalingFactor, layoutCache, dtype };
  const cores = availableParallelism();
  // Threads per worker: as asked, else the cores shared among the workers asked for.
  const threads = options.threads ?? Math.max(1, Math.floor(cores / (options.workers ?? 1)));
  // The backend starts first (with several workers the model runs in them, and this thread's backend stays
  // single-threaded): the threaded wasm build's pthread worker loads the module on another core, most of its
  // 0.15 s start, while this thread reads the config, the tokenizer and the checkpoint's header. Their errors
  // still come before any weight is read, once the backend has settled, so no start goes on behind the caller.
  const starting = selectBackend(backend, undefined, { wasmThreads: (options.workers ?? 1) === 1 ? threads : 1 });
  let config: NomicBertConfig, tokenizer: TextTokenizer, checkpoint: CheckedCheckpoint;
  try {
    config = readConfig(dir, modelOptions);
    tokenizer = TextTokenizer.fromFiles(readTokenizerFiles(dir), config.n_positions, maxLength);
    checkpoint = openCheckpoint(weightsPath(dir, weightsFile), config);
    checkpoint.file.close();
  } catch (error) {
    await starting.catch(() => undefined);
    throw error;
  }
  const active = backendNamed(await starting);
  const precisions = active.dtypes();
  if (!precisions.supported.includes(dtype)) throw new ConfigError('dtype', dtype, `not on the ${active.name} backend: ${precisions.q8Failure}`);
  const typicalBatch = estimateMemory(config, 16, 512, { attention: active.attention(), ffnWidth: checkpoint.ffnWidth });
  const workers =
    options.workers ??
    // Where one instance computes on one core (wasm whose threads could not start), workers use the others.
    (active.needsWorkersForCores() && options.threads === undefined
      ? defaultWorkerCount({
          oneCorePerInstance: true,
          cores,
          availableBytes: availableMemory(freemem(), process.constrainedMemory?.()),
          batch: typicalBatch,
          weightCopies: wasmWeightCopies(),
        })
      : 1);
  const device = active.device();
  if (device !== undefined) checkTensorLimit(config, checkpoint.ffnWidth, device);
  let runner: BatchRunner;
  if (workers === 1) {
    active.reserve(typicalBatch.totalBytes);
    const model = await active.loadModel(dir, modelOptions);
    runner = new LocalRunner(model, active.guard, active.threads(), active.batchesInFlight);
  } else {
    const wasmThreads = active.threads() > 1 || options.threads !== undefined ? threads : 1;
    // Made here once, not by every worker at the same time.
    if (layoutCache !== false) runtimeLayoutFile(weightsPath(dir, weightsFile), config, layoutNotice);
    runner = await WorkerPoolRunner.start(workers, { dir, backend: active.name, modelOptions, wasmThreads, reserveBytes: typicalBatch.totalBytes });
  }
  const embedder = new Embedder(runner, tokenizer, active, config, { device, modelDir: dir, dtype, modelName, machineBytes: totalmem() });
  await warmUp(embedder);
  return embedder;
}

/** A weight above the adapter's per-buffer limit can never be bound; say so before uploading anything. */
function checkTensorLimit(config: NomicBertConfig, ffnWidth: number, device: GpuAdapterReport): void {
  const weights = estimateMemory(config, 1, 1, { ffnWidth });
  if (weights.largestTensorBytes > device.maxStorageBufferBindingSize) {
    throw new BackendError(
      'webgpu',
      `the word embeddings take ${weights.largestTensorBytes} bytes, more than this adapter binds in one buffer ` +
        `(maxStorageBufferBindingSize ${device.maxStorageBufferBindingSize}); use another backend`,
    );
  }
}

export { Embedder, type EmbedderDetails } from './embedder-core.js';
