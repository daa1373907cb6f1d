/**
 * The server a soak runs against: `nomic-embed serve` on the tiny fixture
 * model with an API key, low limits (so requests just past them stay small)
 * and short client timeouts (so slow clients are cut off within the run),
 * and the texts whose embeddings it must return.
 */
import { fixtureDir, reference, TOLERANCE } from '../../test/helpers/fixtures.js';
import { startServeProcess, type ServeProcess } from './serve-process.js';
import type { KnownText, TrafficOptions } from './traffic.js';

export const SOAK_API_KEY = 'soak-key';
const LIMITS = { maxRequestTexts: 64, maxBodyBytes: 256 * 1024 } as const;

export interface FixtureServe {
  readonly server: ServeProcess;
  readonly backend: string;
  /** What runTraffic needs besides its client counts and duration. */
  readonly traffic: Pick<TrafficOptions, 'url' | 'apiKey' | 'known' | 'tolerance' | 'limits'>;
  /** The server's own gauges from /metrics, in MiB. */
  readonly metricsMiB: () => Promise<{ heap: number; external: number }>;
}

export interface FixtureServeOptions {
  readonly backend?: string;
  /** Connections the server must accept besides the traffic's (slow clients held open for a drain). */
  readonly extraConnections?: number;
  readonly traceGc?: boolean;
}

export async function startFixtureServe({ backend = 'wasm', extraConnections = 0, traceGc = false }: FixtureServeOptions = {}): Promise<FixtureServe> {
  const server = await startServeProcess(
    [
      '--model', fixtureDir('nomic-tiny'), '--backend', backend, '--api-key', SOAK_API_KEY,
      '--max-request-texts', String(LIMITS.maxRequestTexts), '--max-body-bytes', String(LIMITS.maxBodyBytes),
      '--headers-timeout-ms', '2000', '--request-timeout-ms', '4000', '--max-connections', String(512 + extraConnections),
    ],
    { traceGc },
  );
  const headers = { authorization: `Bearer ${SOAK_API_KEY}` };
  const info = (await (await fetch(`${server.url}/info`, { headers })).json()) as { max_input_length: number; backend: string };
  const known: KnownText[] = reference('nomic-tiny')
    .texts.filter((t) => t.text !== '')
    .map((t) => ({ text: t.text, tokens: t.num_tokens, embedding: t.embedding, matryoshka16: t.matryoshka['16'] }));
  const gauge = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]) / 2 ** 20;
  return {
    server,
    backend: info.backend,
    traffic: {
      url: server.url,
      apiKey: SOAK_API_KEY,
      known,
      tolerance: TOLERANCE.embedding,
      limits: { ...LIMITS, maxInputTokens: info.max_input_length },
    },
    metricsMiB: async () => {
      const metrics = await (await fetch(`${server.url}/metrics`, { headers })).text();
      return { heap: gauge(metrics, 'nodejs_heap_size_used_bytes'), external: gauge(metrics, 'nodejs_external_memory_bytes') };
    },
  };
}

/** `count` OpenAI requests of one to four known texts, each resolving to its status. */
export function embedRequests({ url, apiKey, known }: FixtureServe['traffic'], count: number): Promise<number>[] {
  return Array.from({ length: count }, (_, i) =>
    fetch(`${url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ input: known.slice(0, 1 + (i % 4)).map((t) => t.text) }),
    }).then((r) => r.status),
  );
}
