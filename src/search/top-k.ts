/**
 * Similarity search over stored vectors, in plain JavaScript: the query
 * against every row, keeping the best k in a heap. The corpus is read where
 * it lies (an array of vectors, or one row-major matrix such as a .npy file's
 * data), never copied.
 */

/** Vectors to search: one per row, as arrays or as one row-major matrix. */
export type Corpus<V> = readonly V[] | { readonly data: V; readonly dimensions: number };

export interface Scored {
  readonly index: number;
  readonly score: number;
}

export interface Ranked {
  readonly index: number;
  /** Bits that differ. */
  readonly distance: number;
}

/**
 * The k rows most similar to `query` by cosine similarity, best first; ties
 * by index. A row or query of zero length scores 0. `k` larger than the
 * corpus returns every row.
 */
export function cosineTopK(query: ArrayLike<number>, corpus: Corpus<Float32Array>, k: number): Scored[] {
  const D = query.length;
  let queryNorm = 0;
  for (let i = 0; i < D; i++) queryNorm += query[i] * query[i];
  queryNorm = Math.sqrt(queryNorm);
  const best = new TopK(k, true);
  const q = Float32Array.from(query);
  const tail = D - (D % 4);
  forEachRow(corpus, D, (row, offset, index) => {
    // Four independent sums per quantity: the additions no longer wait on each other.
    let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    let n0 = 0, n1 = 0, n2 = 0, n3 = 0;
    let i = 0;
    for (; i < tail; i += 4) {
      const x0 = row[offset + i], x1 = row[offset + i + 1], x2 = row[offset + i + 2], x3 = row[offset + i + 3];
      d0 += q[i] * x0;
      d1 += q[i + 1] * x1;
      d2 += q[i + 2] * x2;
      d3 += q[i + 3] * x3;
      n0 += x0 * x0;
      n1 += x1 * x1;
      n2 += x2 * x2;
      n3 += x3 * x3;
    }
    for (; i < D; i++) {
      const x = row[offset + i];
      d0 += q[i] * x;
      n0 += x * x;
    }
    const denominator = queryNorm * Math.sqrt(n0 + n1 + n2 + n3);
    best.offer(index, denominator > 0 ? (d0 + d1 + d2 + d3) / denominator : 0);
  });
  return best.sorted().map(({ index, value }) => ({ index, score: value }));
}

/**
 * The k packed binary vectors (`binary` Int8Array or `ubinary` Uint8Array,
 * 8 dimensions a byte) nearest `query` in Hamming distance, nearest first;
 * ties by index. Subtracting 128 flips the same bit in every byte, so both
 * forms give the same distances.
 */
export function hammingTopK(query: Int8Array | Uint8Array, corpus: Corpus<Int8Array | Uint8Array>, k: number): Ranked[] {
  const bytes = query.length;
  const q = asBytes(query);
  const best = new TopK(k, false);
  forEachRow(corpus, bytes, (row, offset, index) => {
    const r = asBytes(row);
    let distance = 0;
    for (let i = 0; i < bytes; i++) distance += POPCOUNT[q[i] ^ r[offset + i]];
    best.offer(index, distance);
  });
  return best.sorted().map(({ index, value }) => ({ index, distance: value }));
}

function forEachRow<V extends ArrayLike<number>>(corpus: Corpus<V>, width: number, visit: (row: V, offset: number, index: number) => void): void {
  if (Array.isArray(corpus)) {
    (corpus as readonly V[]).forEach((row, index) => {
      if (row.length !== width) throw new RangeError(`corpus[${index}] has ${row.length} values, the query ${width}`);
      visit(row, 0, index);
    });
    return;
  }
  const { data, dimensions } = corpus as { data: V; dimensions: number };
  if (dimensions !== width) throw new RangeError(`the corpus has ${dimensions} values per row, the query ${width}`);
  if (data.length % dimensions !== 0) throw new RangeError(`the corpus holds ${data.length} values, not a whole number of rows of ${dimensions}`);
  for (let index = 0, offset = 0; offset < data.length; index++, offset += dimensions) visit(data, offset, index);
}

function asBytes(v: ArrayLike<number>): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array((v as Int8Array).buffer, (v as Int8Array).byteOffset, v.length);
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => {
  let bits = 0;
  for (let x = i; x > 0; x >>= 1) bits += x & 1;
  return bits;
});

/** The k best (index, value) pairs seen: a heap whose root is the worst kept. */
class TopK {
  private readonly heap: { index: number; value: number }[] = [];

  constructor(
    private readonly k: number,
    private readonly highIsBetter: boolean,
  ) {
    if (!Number.isSafeInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  }

  /** Whether a is better than b: the better value, or on a tie the lower index. */
  private better(a: { index: number; value: number }, b: { index: number; value: number }): boolean {
    if (a.value !== b.value) return this.highIsBetter ? a.value > b.value : a.value < b.value;
    return a.index < b.index;
  }

  offer(index: number, value: number): void {
    const item = { index, value };
    if (this.heap.length < this.k) {
      this.heap.push(item);
      this.siftUp(this.heap.length - 1);
    } else if (this.better(item, this.heap[0])) {
      this.heap[0] = item;
      this.siftDown(0);
    }
  }

  sorted(): { index: number; value: number }[] {
    return [...this.heap].sort((a, b) => (this.better(a, b) ? -1 : 1));
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.better(this.heap[parent], this.heap[i])) break;
      [this.heap[parent], this.heap[i]] = [this.heap[i], this.heap[parent]];
      i = parent;
    }
  }

  private siftDown(i: number): void {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let worst = i;
      if (left < this.heap.length && this.better(this.heap[worst], this.heap[left])) worst = left;
      if (right < this.heap.length && this.better(this.heap[worst], this.heap[right])) worst = right;
      if (worst === i) return;
      [this.heap[worst], this.heap[i]] = [this.heap[i], this.heap[worst]];
      i = worst;
    }
  }
}
