import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { backendNamed } from '../backends/backend.js';
import { selectBackend } from '../backends/select.js';
import { cachedModel } from '../download/model-cache.js';
import { pull } from '../download/pull.js';
import { estimateMemory } from '../pipeline/memory.js';
import { CONVERT_DTYPES, convertWeights, type ConvertDtype } from '../weights/convert.js';
import { readConfig } from '../weights/model-folder.js';
import { parameterCount, weightTable } from '../weights/weight-table.js';
import { argsConfig, backendOption, integerOption, MODEL_SOURCE_OPTIONS, UsageError } from './args.js';
import type { CliIo } from './main.js';
import { downloadReporter, DEFAULT_MODEL, modelFolder } from './model-source.js';
import { formatBytes, ProgressBar } from './progress.js';

/** `nomic-embed pull`: download a model folder from the hub, into the cache unless --weights-dir says where. */
export async function pullCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(argsConfig(args, { 'weights-dir': { type: 'string' }, revision: { type: 'string' }, quiet: { type: 'boolean' } }));
  if (positionals.length > 1) throw new UsageError('pull takes one repository');
  const repo = positionals[0] ?? DEFAULT_MODEL;
  const report = downloadReporter(io, values.quiet === true);
  const dir =
    values['weights-dir'] === undefined
      ? // Online by definition: pulling is asking to download.
        await cachedModel(repo, { revision: values.revision, offline: false, ...report })
      : await pull({ repo, weightsDir: values['weights-dir'], revision: values.revision, ...report });
  io.stdout.write(`${dir}\n`);
  return 0;
}

/** `nomic-embed convert`: Hugging Face checkpoint to the runtime layout. */
export function convertCommand(args: readonly string[], io: CliIo): number {
  const { values, positionals } = parseArgs(argsConfig(args, { dtype: { type: 'string' }, quiet: { type: 'boolean' } }));
  if (positionals.length !== 2) throw new UsageError('convert needs SOURCE_DIR and OUT_DIR');
  const dtype = (values.dtype ?? 'float32') as ConvertDtype;
  if (!CONVERT_DTYPES.includes(dtype)) throw new UsageError(`--dtype must be ${CONVERT_DTYPES.join(', ')}; got "${values.dtype}"`);
  const [source, out] = positionals;
  if (!existsSync(source)) throw new UsageError(`${source}: no such folder`);
  const bar = !values.quiet && io.stderr.isTTY === true ? new ProgressBar(io.stderr, 'converting', 'tensors') : undefined;
  const { path, tensors } = convertWeights(source, out, { dtype, onProgress: (done, total) => bar?.update(done, total) });
  bar?.finish(tensors, tensors);
  if (!values.quiet) io.stderr.write(`wrote ${tensors} tensors (${dtype}) to ${path}\n`);
  return 0;
}

/** `nomic-embed info`: backend, config, parameter count, memory estimate. */
export async function infoCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs(
    argsConfig(args, { ...MODEL_SOURCE_OPTIONS, backend: { type: 'string' }, threads: { type: 'string' }, batch: { type: 'string' }, length: { type: 'string' } }),
  );
  const dir = await modelFolder(values, io);
  const config = readConfig(dir);
  const threads = integerOption('threads', values.threads) ?? availableParallelism();
  const backend = await selectBackend(backendOption(values.backend), undefined, { wasmThreads: threads });
  const batch = integerOption('batch', values.batch) ?? 32;
  const length = integerOption('length', values.length) ?? 512;
  const active = backendNamed(backend);
  const estimate = estimateMemory(config, batch, length, { attention: active.attention() });
  const lines = [
    `backend: ${backend}`,
    ...active.describe(formatBytes),
    `model: ${dir}`,
    `config: ${config.n_layer} layers, hidden ${config.n_embd}, ${config.n_head} heads, SwiGLU ${config.ffnWidth}, vocab ${config.paddedVocabSize}, ` +
      `max positions ${config.n_positions}, rotary base ${config.rotary_emb_base}, NTK scaling ${config.rotary_scaling_factor ?? 'off'}`,
    `parameters: ${parameterCount(weightTable(config, 'hf')).toLocaleString('en-US')}`,
    `memory for a batch of ${batch} × ${length} tokens: ${formatBytes(estimate.totalBytes)} ` +
      `(weights ${formatBytes(estimate.weightBytes)}, activations ${formatBytes(estimate.activationBytes)}, of which attention scores ${formatBytes(estimate.attentionBytes)})`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
