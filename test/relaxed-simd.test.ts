import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseQ8Simd, q8ProductKernel } from '../src/backends/q8/wasm-q8.js';
import { InputError } from '../src/errors.js';
import { loadEmbedder, type Embedder } from '../src/embedder.js';
import { fixtureDir } from './helpers/fixtures.js';

/**
 * The q8 product's two roads: relaxed SIMD where the engine has it and the
 * probe finds it exact, baseline SIMD128 elsewhere. Node 20 has relaxed SIMD
 * only behind `--experimental-wasm-relaxed-simd`, and there its baseline
 * compiler gets the dot product wrong: so the relaxed road is tested in Node
 * processes started with that flag, with and without `--no-liftoff`.
 */
const RUN = fileURLToPath(new URL('./helpers/relaxed-simd-run.ts', import.meta.url));
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
/** Node 20's V8 ships relaxed SIMD behind a flag only; later Node releases run it by default. */
const RELAXED_BY_DEFAULT = NODE_MAJOR >= 22;
/** The flags that give this Node relaxed SIMD and keep its baseline compiler away (later releases refuse the first as unknown). */
const RELAXED = [...(RELAXED_BY_DEFAULT ? [] : ['--experimental-wasm-relaxed-simd']), '--no-liftoff'];

/** Runs the helper in a Node started with `flags`, the relaxed product asked for as `simd` says (by default, the engine's choice). */
function run(flags: string[], args: string[] = [], simd = ''): Record<string, any> {
  const env = { ...process.env, NOMIC_EMBED_Q8_SIMD: simd };
  const child = spawnSync(process.execPath, [...flags, '--import', 'tsx', RUN, ...args], { encoding: 'utf8', maxBuffer: 1 << 24, env });
  const line = child.stdout.split('\n').find((l) => l.startsWith('{'));
  if (child.status !== 0 || line === undefined) throw new Error(`the relaxed-SIMD run failed (${child.status}):\n${child.stderr}`);
  return JSON.parse(line);
}

describe('q8 on relaxed SIMD, where the engine computes it exactly', () => {
  let result: Record<string, any>;
  beforeAll(() => {
    // Asked for: on some CPUs this engine runs it slower than the baseline kernel, and would not pick it.
    result = run(RELAXED, [], 'relaxed');
  });

  it('passes the probe on both kinds of memory, and the wasm backend then runs it where asked for', () => {
    expect(result.probe).toEqual({ single: null, shared: null });
    expect(result.kernel).toEqual({ simd: 'relaxed' });
  });

  it('lays the codes out, sums each column, quantizes rows and multiplies exactly as the reference', () => {
    expect(result.kernels).toHaveLength(8);
    for (const check of result.kernels) {
      expect(check, JSON.stringify(check.shape)).toMatchObject({ layoutExact: true, sumsExact: true, activationsExact: true, productExact: true, rangeExact: true });
    }
  });

  it('shares its products with a helper thread, bit for bit', () => {
    expect(result.threads.exact).toBe(true);
    expect(result.threads.helperChunks).toBeGreaterThan(0);
  });

  it("stays within the README's cosine of float32 on both fixtures, at half the baseline's activation resolution", () => {
    for (const [fixture, figures] of Object.entries<Record<string, number>>(result.fidelity)) {
      expect(figures.mean, fixture).toBeGreaterThanOrEqual(0.999);
      expect(figures.worst, fixture).toBeGreaterThanOrEqual(0.995);
      expect(figures.unchanged, fixture).toBeLessThan(figures.texts / 2);
    }
  });
});

describe('the relaxed-SIMD probe', () => {
  it.skipIf(RELAXED_BY_DEFAULT)("refuses Node 20's relaxed SIMD, whose baseline compiler gets the dot product wrong", () => {
    const { probe } = run(['--experimental-wasm-relaxed-simd'], ['--probe-only']);
    expect(probe.single).toMatch(/computes relaxed SIMD's dot product wrongly on its first call/);
    expect(probe.shared).toMatch(/computes relaxed SIMD's dot product wrongly on its first call/);
  });

  it('times the two exact products against each other and runs the faster, saying at what rates', () => {
    const { kernel, description } = run(RELAXED, ['--kernel-only']);
    const { relaxed, baseline } = kernel.rates;
    expect(relaxed).toBeGreaterThan(1);
    expect(baseline).toBeGreaterThan(1);
    const figures = `${relaxed.toFixed(0)} GOP/s against the baseline kernel's ${baseline.toFixed(0)}`;
    if (relaxed > baseline) {
      expect(kernel).toEqual({ simd: 'relaxed', rates: kernel.rates });
      expect(description).toBe(`q8 products: relaxed SIMD (i32x4.relaxed_dot_i8x16_i7x16_add_s, ${figures})`);
    } else {
      expect(kernel).toEqual({ simd: 'baseline', why: `relaxed SIMD is exact here but slower: ${figures}`, rates: kernel.rates });
      expect(description).toBe(`q8 products: baseline SIMD128 (relaxed SIMD is exact here but slower: ${figures})`);
    }
  });

  it('runs the baseline kernel when it is asked for, without probing relaxed SIMD', () => {
    const { kernel } = run(RELAXED, ['--kernel-only'], 'Baseline');
    expect(kernel).toEqual({ simd: 'baseline', why: 'the baseline kernel was asked for' });
  });

  it('refuses an unknown choice, naming the variable and the choices', () => {
    expect(parseQ8Simd(undefined, 'NOMIC_EMBED_Q8_SIMD')).toBe('auto');
    expect(parseQ8Simd('', 'NOMIC_EMBED_Q8_SIMD')).toBe('auto');
    expect(parseQ8Simd('RELAXED', 'NOMIC_EMBED_Q8_SIMD')).toBe('relaxed');
    expect(() => parseQ8Simd('fast', 'NOMIC_EMBED_Q8_SIMD')).toThrow(new InputError('NOMIC_EMBED_Q8_SIMD', '"fast" is not one of auto, relaxed, baseline'));
  });

  describe('in this process', () => {
    let embedder: Embedder;
    beforeAll(async () => {
      embedder = await loadEmbedder(fixtureDir('nomic-tiny'), { backend: 'wasm', workers: 1, threads: 1, dtype: 'q8' });
    });
    afterAll(() => embedder.dispose());

    it.skipIf(RELAXED_BY_DEFAULT)('runs the baseline kernel where the engine has no relaxed SIMD, and says why', () => {
      expect(q8ProductKernel()).toEqual({ simd: 'baseline', why: expect.stringMatching(/this engine has no relaxed SIMD/) });
    });

    it.runIf(RELAXED_BY_DEFAULT)('races the two kernels where the engine has relaxed SIMD by default, and runs the faster', () => {
      const kernel = q8ProductKernel();
      expect(kernel.simd).toBe(kernel.rates!.relaxed > kernel.rates!.baseline ? 'relaxed' : 'baseline');
    });
  });
});
