import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadEmbedder } from '../../src/embedder.js';

/** The fixtures' tolerances (test/fixtures/README.md), as the test suite holds them. */
const TOLERANCE = { meanPooled: 1e-4, embedding: 2e-5 } as const;

interface ReferenceText {
  text: string;
  mean_pooled: number[];
  embedding: number[];
  matryoshka: Record<string, number[]>;
}

export interface ParityResult {
  readonly passed: boolean;
  readonly outputs: { output: string; maxDiff: number; tolerance: number }[];
}

/** Embeds a fixture's texts on the active backend and compares each output with the upstream model's. */
export async function compareWithReference(dir: string): Promise<ParityResult> {
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as {
    pooling: { matryoshka_dims: number[] };
    texts: ReferenceText[];
  };
  const texts = reference.texts.map((t) => t.text);
  const embedder = await loadEmbedder(dir, { backend: 'webgpu' });
  try {
    const outputs: ParityResult['outputs'] = [];
    const compare = (output: string, actual: Float32Array[], expected: (t: ReferenceText) => number[], tolerance: number) => {
      let maxDiff = 0;
      reference.texts.forEach((t, i) => expected(t).forEach((x, j) => (maxDiff = Math.max(maxDiff, Math.abs(actual[i][j] - x) || 0))));
      outputs.push({ output, maxDiff, tolerance });
    };
    compare('embedding', (await embedder.embed(texts)).embeddings, (t) => t.embedding, TOLERANCE.embedding);
    compare('mean_pooled', (await embedder.embed(texts, { normalize: false })).embeddings, (t) => t.mean_pooled, TOLERANCE.meanPooled);
    for (const dims of reference.pooling.matryoshka_dims) {
      const { embeddings } = await embedder.embed(texts, { dimensions: dims });
      compare(`matryoshka[${dims}]`, embeddings, (t) => t.matryoshka[String(dims)], TOLERANCE.embedding);
    }
    return { passed: outputs.every((o) => o.maxDiff <= o.tolerance), outputs };
  } finally {
    await embedder.dispose();
  }
}
