import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The server's Prometheus metrics, in a registry of its own (two servers in
 * one process do not mix their counts), with the process's default metrics.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'nomic_embed_requests_total',
    help: 'HTTP requests, by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'nomic_embed_request_duration_seconds',
    help: 'Time from receiving a request to sending its answer, by route',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly queueTexts = new Gauge({ name: 'nomic_embed_queue_texts', help: 'Texts waiting for a batch', registers: [this.registry] });
  readonly queueTokens = new Gauge({ name: 'nomic_embed_queue_tokens', help: 'Tokens waiting for a batch', registers: [this.registry] });
  readonly batches = new Counter({ name: 'nomic_embed_batches_total', help: 'Forward batches the served embedder ran (its library callers in this process included)', registers: [this.registry] });
  readonly batchSize = new Histogram({
    name: 'nomic_embed_batch_size',
    help: 'Texts per forward batch',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly batchPadding = new Histogram({
    name: 'nomic_embed_batch_padding_ratio',
    help: 'Share of the positions of a forward batch that were padding',
    buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 0.9],
    registers: [this.registry],
  });
  readonly tokens = new Counter({ name: 'nomic_embed_tokens_total', help: 'Tokens embedded', registers: [this.registry] });
  readonly connections = new Gauge({ name: 'nomic_embed_open_connections', help: 'Open HTTP connections', registers: [this.registry] });
  readonly refusedConnections = new Counter({
    name: 'nomic_embed_refused_connections_total',
    help: 'Connections refused on arrival because maxConnections were open',
    registers: [this.registry],
  });
  readonly timedOut = new Counter({
    name: 'nomic_embed_timed_out_requests_total',
    help: 'Connections cut off because their headers or body did not arrive in time',
    registers: [this.registry],
  });
  readonly backend = new Gauge({
    name: 'nomic_embed_backend_info',
    help: 'The backend and device the model runs on (value 1)',
    labelNames: ['backend', 'device'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  batchRan(texts: number, tokens: number, paddedTokens: number): void {
    this.batches.inc();
    this.batchSize.observe(texts);
    this.batchPadding.observe(paddedTokens === 0 ? 0 : 1 - tokens / paddedTokens);
    this.tokens.inc(tokens);
  }

  queueChanged(texts: number, tokens: number): void {
    this.queueTexts.set(texts);
    this.queueTokens.set(tokens);
  }
}
