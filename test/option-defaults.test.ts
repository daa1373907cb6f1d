import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { backendNamed } from '../src/backends/backend.js';
import type { BackendName } from '../src/backends/select.js';
import { EMBED_DEFAULTS, LOAD_DEFAULTS, resolveEmbedOptions } from '../src/pipeline/embed-options.js';
import { InputError } from '../src/errors.js';

const SOURCE = readFileSync(new URL('../src/pipeline/embed-options.ts', import.meta.url), 'utf8');

/** The `@default` of `name` in `interface`'s TSDoc, as written. */
function documentedDefault(interfaceName: string, name: string): string {
  const body = SOURCE.slice(SOURCE.indexOf(`export interface ${interfaceName}`));
  const member = new RegExp(`/\\*\\*((?:(?!\\*/)[\\s\\S])*)\\*/\\s*readonly ${name}\\?:`).exec(body.slice(0, body.indexOf('\n}\n')));
  const tag = /@default ([^\n*]+)/.exec(member?.[1] ?? '');
  if (tag === null) throw new Error(`${interfaceName}.${name} documents no @default`);
  return tag[1].trim();
}

/** A default as TSDoc writes it: strings quoted, numbers and booleans bare. */
const written = (value: unknown) => (typeof value === 'string' ? `'${value}'` : String(value));

const GiB = 1024 ** 3;
const defaultMemoryBudget = (name: BackendName, machineBytes = 16 * GiB) => backendNamed(name).defaultMemoryBudget(machineBytes);
const traits = {
  hiddenSize: 64,
  backend: 'wasm' as const,
  defaultMemoryBudgetBytes: defaultMemoryBudget('wasm'),
  defaultMaxBatchTokens: backendNamed('wasm').defaultMaxBatchTokens,
};

describe('documented defaults are the coded ones', () => {
  it.each(Object.entries(EMBED_DEFAULTS))('embed option %s', (name, value) => {
    expect(documentedDefault('EmbedOptions', name)).toBe(written(value));
    expect((resolveEmbedOptions([], {}, traits) as unknown as Record<string, unknown>)[name] ?? lookUp(name)).toEqual(value);
  });

  it.each(Object.entries(LOAD_DEFAULTS))('loadEmbedder option %s', (name, value) => {
    expect(documentedDefault('LoadEmbedderOptions', name)).toBe(written(value));
  });

  it('maxBatchTokens: 2048 on wasm, else 8192', () => {
    expect(documentedDefault('EmbedOptions', 'maxBatchTokens')).toBe("2048 on wasm (whose heap keeps the largest batch's memory), else 8192");
    expect(backendNamed('wasm').defaultMaxBatchTokens).toBe(2048);
    for (const name of ['webgpu', 'cpu', 'tensorflow', 'tensorflow-gpu'] as const) expect(backendNamed(name).defaultMaxBatchTokens, name).toBe(8192);
    expect(resolveEmbedOptions([], {}, traits).limits.maxBatchTokens).toBe(2048);
    expect(resolveEmbedOptions([], {}, { ...traits, backend: 'cpu', defaultMaxBatchTokens: backendNamed('cpu').defaultMaxBatchTokens }).limits.maxBatchTokens).toBe(8192);
  });

  it('memoryBudgetBytes: 3 GiB on wasm, 4 GiB on webgpu, else half the machine up to 8 GiB', () => {
    expect(documentedDefault('EmbedOptions', 'memoryBudgetBytes')).toBe(
      "3 GiB on wasm (its heap tops out at 4 GiB), 4 GiB on webgpu (it reports no free memory), else half the machine's memory up to 8 GiB",
    );
    expect(defaultMemoryBudget('wasm')).toBe(3 * GiB);
    expect(defaultMemoryBudget('webgpu')).toBe(4 * GiB);
    expect(defaultMemoryBudget('cpu', 6 * GiB)).toBe(3 * GiB);
    expect(defaultMemoryBudget('tensorflow', 64 * GiB)).toBe(8 * GiB);
    expect(resolveEmbedOptions([], {}, traits).limits.memoryBudgetBytes).toBe(3 * GiB);
  });
});

/** Where the resolver keeps a default that is not a field of its own. */
function lookUp(name: string): unknown {
  const resolved = resolveEmbedOptions([], {}, traits);
  const places: Record<string, unknown> = {
    normalize: resolved.output.normalize,
    pooling: resolved.output.pooling,
    maxBatchSize: resolved.limits.maxBatchSize,
  };
  return places[name];
}

describe('the options resolver', () => {
  it('names every option it does not know, and every known one', () => {
    const error = (() => {
      try {
        resolveEmbedOptions([], { tasks: 'search_query' } as never, traits);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(/unknown option "tasks"; known: task, dimensions, .*signal, maxQueueTokens/);
  });

  it.each([
    [{ task: 'search' }, /task: unknown task "search"; use one of search_query, search_document, clustering, classification/],
    [{ pooling: 'max' }, /pooling: must be 'mean' or 'cls', got "max"/],
    [{ truncation: 'cut' }, /truncation: must be 'truncate' or 'error', got "cut"/],
    [{ longText: 'chunk' }, /longText: must be 'truncate' or 'mean', got "chunk"/],
    [{ precision: 'int4' }, /precision: unknown precision "int4"; use one of float32, int8, uint8, binary, ubinary/],
    [{ maxQueueTokens: 0 }, /maxQueueTokens: must be an integer of at least 1, got number 0/],
    [{ signal: {} }, /signal: must be an AbortSignal, got an object/],
  ])('refuses %j with a message naming the option', (options, message) => {
    expect(() => resolveEmbedOptions([], options as never, traits)).toThrow(message);
  });
});
