import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The project's own copy of the reference fixtures (see test/fixtures/README.md). */
export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const fixtureDir = (name: FixtureName) => `${FIXTURES}${name}`;

export type FixtureName = 'nomic-tiny' | 'nomic-tiny-ntk';
export const FIXTURE_NAMES: readonly FixtureName[] = ['nomic-tiny', 'nomic-tiny-ntk'];

/** Tolerances from the fixtures' README (max absolute difference, float32 vs float64 reference). */
export const TOLERANCE = {
  lastHiddenState: 5e-4,
  meanPooled: 1e-4,
  embedding: 2e-5,
} as const;

export interface ReferenceText {
  name: string;
  text: string;
  num_tokens: number;
  input_ids: number[];
  attention_mask: number[];
  token_type_ids: number[];
  mean_pooled: number[];
  embedding: number[];
  matryoshka: Record<string, number[]>;
  last_hidden_state?: number[][];
  ntk_scaling_active?: boolean;
}

export interface Reference {
  pooling: { matryoshka_dims: number[]; layer_norm_eps: number };
  texts: ReferenceText[];
}

const cache = new Map<FixtureName, Reference>();
export function reference(name: FixtureName): Reference {
  if (!cache.has(name)) cache.set(name, JSON.parse(readFileSync(`${fixtureDir(name)}/reference.json`, 'utf8')));
  return cache.get(name)!;
}

/** Largest |actual − expected| and where it is, for failure messages. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): { diff: number; index: number } {
  if (actual.length !== expected.length) {
    throw new Error(`length mismatch: actual ${actual.length}, expected ${expected.length}`);
  }
  let diff = 0;
  let index = -1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= diff)) {
      diff = d;
      index = i;
    }
  }
  return { diff, index };
}

/** Throws with the largest difference and its location when it exceeds the tolerance. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  const { diff, index } = maxAbsDiff(actual, expected);
  if (!(diff <= tolerance)) {
    throw new Error(
      `${what}: max abs diff ${diff.toExponential(3)} > ${tolerance} at index ${index} ` +
        `(actual ${actual[index]}, expected ${expected[index]})`,
    );
  }
}

/** The cosine of two vectors, in float64. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}
