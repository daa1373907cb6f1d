import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadEmbedder } from '../embedder.js';
import type { Precision } from '../pipeline/quantize.js';
import { cosineTopK, hammingTopK } from '../search/top-k.js';
import { argsConfig, backendOption, choiceOption, integerOption, MODEL_SOURCE_OPTIONS, TASKS, UsageError } from './args.js';
import { modelFolder } from './model-source.js';
import { textOfLine } from '../formats/text-lines.js';
import type { CliIo } from './main.js';
import { readNpy } from '../formats/npy.js';

/**
 * `nomic-embed search`: the texts of a corpus nearest each query, from the
 * corpus's embeddings in a .npy file (as `embed --output` writes them):
 * cosine similarity for float32, Hamming distance for binary ones.
 */
export async function searchCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs(
    argsConfig(args, {
      index: { type: 'string' },
      texts: { type: 'string' },
      k: { type: 'string' },
      ...MODEL_SOURCE_OPTIONS,
      backend: { type: 'string' },
      task: { type: 'string' },
      precision: { type: 'string' },
      json: { type: 'boolean' },
    }),
  );
  if (positionals.length === 0) throw new UsageError('search needs a query');
  if (values.index === undefined || values.texts === undefined) throw new UsageError('search needs --index FILE.npy and --texts FILE');
  for (const file of [values.index, values.texts]) if (!existsSync(file)) throw new UsageError(`${file}: no such file`);
  const task = choiceOption('task', values.task, TASKS) ?? 'search_query';
  const k = integerOption('k', values.k) ?? 10;

  let index;
  try {
    index = readNpy(readFileSync(values.index));
  } catch (error) {
    throw new UsageError(`--index ${values.index}: ${(error as Error).message}`);
  }
  const [rows, columns] = index.shape;
  // int8 bytes could be binary or int8 codes; the file does not say, so binary unless told otherwise.
  const precision = (values.precision ?? { '<f4': 'float32', '|i1': 'binary', '|u1': 'ubinary' }[index.dtype]) as Precision;
  const expected = { float32: '<f4', binary: '|i1', ubinary: '|u1' }[precision as 'float32' | 'binary' | 'ubinary'];
  if (expected === undefined) throw new UsageError(`--precision ${precision}: search works on float32 and binary (ubinary) indexes`);
  if (expected !== index.dtype) throw new UsageError(`--precision ${precision} needs a ${expected} index; ${values.index} is ${index.dtype}`);
  const texts = readTexts(values.texts);
  if (texts.length !== rows) throw new UsageError(`${values.texts} holds ${texts.length} texts and ${values.index} ${rows} vectors; they must match, row for row`);

  const embedder = await loadEmbedder(await modelFolder(values, io), { backend: backendOption(values.backend) });
  try {
    const dimensions = precision === 'float32' ? columns : columns * 8;
    const { embeddings } = await embedder.embed(positionals, {
      task,
      precision,
      dimensions: dimensions === embedder.config.n_embd ? undefined : dimensions,
    });
    const lines: string[] = [];
    embeddings.forEach((query, q) => {
      const hits =
        precision === 'float32'
          ? cosineTopK(query as Float32Array, { data: index.data as Float32Array, dimensions: columns }, k).map((h) => ({ index: h.index, score: h.score }))
          : hammingTopK(query as Int8Array | Uint8Array, { data: index.data as Int8Array | Uint8Array, dimensions: columns }, k).map((h) => ({
              index: h.index,
              distance: h.distance,
            }));
      if (!values.json) lines.push(`${positionals[q]}`);
      hits.forEach((hit, rank) => {
        const text = texts[hit.index];
        if (values.json) lines.push(JSON.stringify({ query: positionals[q], rank: rank + 1, ...hit, text }));
        else {
          const measure = 'score' in hit ? (hit.score as number).toFixed(4) : `${hit.distance} bits`;
          lines.push(`  ${rank + 1}. ${measure}  [${hit.index}] ${text.length > 120 ? `${text.slice(0, 117)}...` : text}`);
        }
      });
    });
    io.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    await embedder.dispose();
  }
}

/** One text per line, or JSON Lines with a "text" field (.jsonl, .ndjson), as `embed --input` reads them. */
function readTexts(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((line, i) => textOfLine(line, i + 1, file));
}
