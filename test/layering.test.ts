import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/**
 * The layers of src/, in the order data flows: a module imports only from its
 * own layer or those before it. Files at the top of src/ are named alone.
 */
const LAYERS: readonly string[][] = [
  ['errors.ts', 'options.ts', 'formats'],
  ['weights'],
  ['model'],
  ['backends'],
  ['pipeline', 'search'],
  ['pool'],
  ['embedder-core.ts', 'embedder.ts', 'download'],
  ['server', 'queue'],
  ['index.ts', 'cli', 'adapters'],
  ['browser'],
];

function layerOf(path: string): number {
  const top = relative(SRC, path).split('/')[0];
  const layer = LAYERS.findIndex((names) => names.includes(top));
  if (layer < 0) throw new Error(`${relative(SRC, path)} is in no layer; add ${top} to LAYERS`);
  return layer;
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|mjs)$/.test(name) ? [path] : [];
  });
}

/** The modules `file` imports at run time: `import type` and `export type` are erased, so they do not count. */
function runtimeImports(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  return [...source.matchAll(/^(?:import|export) (?!type )[^;]*?from '(\.[^']+)'|import\('(\.[^']+)'\)/gms)].map((m) =>
    resolve(dirname(file), (m[1] ?? m[2]).replace(/\.js$/, '.ts')),
  );
}

describe('dependencies point one way', () => {
  it('no module reaches itself through its run-time imports', () => {
    const files = sources(SRC).filter((f) => f.endsWith('.ts'));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(SRC, f)).join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const target of runtimeImports(file)) visit(target, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it('only the adapters import a framework, and nothing imports the adapters: the main entry needs none installed', () => {
    const framework = /from '(@langchain\/|@llamaindex\/|llamaindex|ai'|@ai-sdk\/)/;
    for (const file of sources(SRC)) {
      const source = readFileSync(file, 'utf8');
      const inAdapters = relative(SRC, file).startsWith('adapters/');
      if (!inAdapters) {
        expect(framework.test(source), `${relative(SRC, file)} imports a framework`).toBe(false);
        expect(/from '[^']*adapters\//.test(source), `${relative(SRC, file)} imports an adapter`).toBe(false);
      }
    }
  });

  it.each(sources(SRC).map((f) => [relative(SRC, f), f]))('%s imports only from its layer or earlier ones', (_, file) => {
    const imports = [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'|import\('(\.[^']+)'\)/g)].map((m) => m[1] ?? m[2]);
    for (const specifier of imports) {
      const target = resolve(dirname(file), specifier.replace(/\.js$/, '.ts'));
      expect(layerOf(target), `${relative(SRC, file)} imports ${relative(SRC, target)}`).toBeLessThanOrEqual(layerOf(file));
    }
  });
});
