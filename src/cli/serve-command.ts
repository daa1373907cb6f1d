import { parseArgs } from 'node:util';
import { loadEmbedder } from '../embedder.js';
import type { Task } from '../pipeline/tokenizer.js';
import { serve, type EmbeddingServer } from '../server/serve.js';
import { argsConfig, EMBEDDER_OPTIONS, embedderOptions, integerOption, UsageError } from './args.js';
import { DEFAULT_MODEL, modelFolder } from './model-source.js';
import { describeParallelism } from './embed-command.js';
import type { CliIo } from './main.js';

/**
 * `nomic-embed serve`: the HTTP service. It listens at once (health answers
 * 503 while the model downloads or loads), serves until SIGTERM or SIGINT,
 * then drains (see {@link EmbeddingServer.close}): requests whose body has
 * arrived finish within the grace period, every other connection closes at
 * once; it frees the model and exits 0. A second signal exits at once.
 */
export async function serveCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(
    argsConfig(args, {
      ...EMBEDDER_OPTIONS,
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'served-model-name': { type: 'string' },
      'default-task': { type: 'string' },
      'max-batch-tokens': { type: 'string' },
      'max-queue-tokens': { type: 'string' },
      'max-request-texts': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'batch-wait-ms': { type: 'string' },
      'headers-timeout-ms': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'keep-alive-timeout-ms': { type: 'string' },
      'max-connections': { type: 'string' },
      'grace-seconds': { type: 'string' },
      cors: { type: 'string' },
      quiet: { type: 'boolean' },
    }),
  );
  if (positionals.length > 0) throw new UsageError(`serve takes no arguments, got "${positionals[0]}"`);
  const graceSeconds = integerOption('grace-seconds', values['grace-seconds'], 0) ?? 30;
  const serveOptions = {
    host: values.host,
    port: integerOption('port', values.port, 0),
    apiKey: values['api-key'] ?? (process.env.NOMIC_EMBED_API_KEY || undefined),
    servedModelName: values['served-model-name'],
    defaultTask: values['default-task'] as Task | undefined,
    maxBatchTokens: integerOption('max-batch-tokens', values['max-batch-tokens']),
    maxQueueTokens: integerOption('max-queue-tokens', values['max-queue-tokens']),
    maxRequestTexts: integerOption('max-request-texts', values['max-request-texts']),
    maxBodyBytes: integerOption('max-body-bytes', values['max-body-bytes']),
    batchWaitMs: integerOption('batch-wait-ms', values['batch-wait-ms'], 0),
    headersTimeoutMs: integerOption('headers-timeout-ms', values['headers-timeout-ms']),
    requestTimeoutMs: integerOption('request-timeout-ms', values['request-timeout-ms']),
    keepAliveTimeoutMs: integerOption('keep-alive-timeout-ms', values['keep-alive-timeout-ms']),
    maxConnections: integerOption('max-connections', values['max-connections']),
    cors: values.cors,
    logger: values.quiet ? false : { level: 'info' },
  };
  // The download of a model not yet in the cache, if any, happens while the server listens (health says 503).
  const loading = modelFolder(values, io).then((dir) => loadEmbedder(dir, embedderOptions(values)));
  // A failed load is reported below, through `ready`.
  loading.catch(() => undefined);
  let server: EmbeddingServer;
  try {
    server = await serve(loading, Object.fromEntries(Object.entries(serveOptions).filter(([, v]) => v !== undefined)));
  } catch (error) {
    // Bad options or a port in use: the model being loaded (worker threads, perhaps) must not keep the process alive.
    await loading.then((embedder) => embedder.dispose(), () => undefined);
    throw error;
  }
  const say = (line: string) => void (values.quiet || io.stderr.write(`nomic-embed serve: ${line}\n`));
  say(`listening on ${server.url}, loading ${values.model ?? DEFAULT_MODEL}`);
  try {
    await server.ready;
  } catch (error) {
    await server.close(0);
    throw error;
  }
  const embedder = await loading;
  say(`serving on ${embedder.backend} (${describeParallelism(embedder)}): POST /v1/embeddings, /embed, /api/embed`);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  say(`${signal}: finishing requests in flight (up to ${graceSeconds} s); a second signal stops at once`);
  const atOnce = () => process.exit(130);
  process.once('SIGTERM', atOnce);
  process.once('SIGINT', atOnce);
  await server.close(graceSeconds * 1000);
  await embedder.dispose();
  say('stopped');
  return 0;
}
