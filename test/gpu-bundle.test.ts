import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { tempDir } from './helpers/tmp.js';
import { webGpuSuite } from './helpers/webgpu.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const suite = await webGpuSuite();

function folderSize(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => {
    const stat = statSync(join(dir, name));
    return sum + (stat.isDirectory() ? folderSize(join(dir, name)) : stat.size);
  }, 0);
}

suite.describe('the GPU check bundle', () => {
  it('fits in 60 MiB and checks parity on its own, outside the repository', async () => {
    // In the temp folder, nothing resolves from the repository's node_modules.
    const out = join(tempDir(), 'bundle');
    await exec(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/gpu-bundle.ts'), '--out', out], { cwd: ROOT, maxBuffer: 1 << 24 });
    expect(folderSize(out)).toBeLessThanOrEqual(60 * 2 ** 20);
    // Only Linux x64 of Dawn's builds.
    expect(readdirSync(join(out, 'app/node_modules/webgpu/dist'))).toEqual(['linux-x64']);
    const { stdout } = await exec('sh', [join(out, 'run.sh'), '--parity-only'], { cwd: tempDir(), maxBuffer: 1 << 24 });
    expect(stdout).toMatch(/^adapter: /);
    expect(stdout).toMatch(/parity nomic-tiny: PASS/);
    expect(stdout).toMatch(/parity nomic-tiny-ntk: PASS/);
    expect(stdout).toMatch(/parity passed/);
  });
});
