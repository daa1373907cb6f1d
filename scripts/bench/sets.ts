import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('../../bench/', import.meta.url));

/** The benchmark inputs: every word one bert-base-uncased token, so lengths are exact. */
export const SETS = {
  a: { file: 'a-128.txt', tokens: 128, label: '256 × 128 tokens' },
  b: { file: 'b-512.txt', tokens: 512, label: '64 × 512 tokens' },
  c: { file: 'c-2048.txt', tokens: 2048, label: '8 × 2048 tokens' },
  d: { file: 'c-2048.txt', tokens: 8192, label: '1 × 8192 tokens' },
} as const;

export type SetName = keyof typeof SETS;

export function loadSet(name: SetName, fraction = 1): string[] {
  const lines = readFileSync(`${BENCH}${SETS[name].file}`, 'utf8').split('\n').filter((l) => l.length > 0);
  if (name === 'd') {
    // One 8192-token text: 8190 words from the 2048-token texts, plus [CLS] and [SEP].
    const words = lines.join(' ').split(' ');
    return [words.slice(0, 8190).join(' ')];
  }
  return lines.slice(0, Math.max(1, Math.round(lines.length * fraction)));
}

/** FLOPs of one token's forward pass at sequence length L: the matmuls, 2 per weight, plus attention's 4·L·D per layer. */
export function flopsPerToken(length: number, d = 768, f = 3072, layers = 12): number {
  return layers * (2 * (4 * d * d + 3 * d * f) + 4 * length * d);
}
