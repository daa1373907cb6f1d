import { spawnSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { setUpSystem, SYSTEM_PIECES } from './helpers/system-setup.js';
import { tempDir } from './helpers/tmp.js';

describe("npm test's system set-up", () => {
  it('reports each piece, and redis-server and chromium as present exactly when they run', () => {
    const reports = setUpSystem();
    expect(reports.map((r) => r.script)).toEqual(SYSTEM_PIECES.map((p) => p.script));
    const redisRuns = spawnSync('redis-server', ['--version']).status === 0;
    expect(reports[1].state === 'missing').toBe(!redisRuns);
    const chromiumRuns = spawnSync('chromium', ['--version']).status === 0;
    expect(reports[2].state === 'missing').toBe(!chromiumRuns);
  });

  it('without apt-get or root, reports a missing piece by its script and installs nothing', () => {
    const bin = tempDir();
    // bash alone on the PATH: no redis-server, no ldconfig to find a Vulkan loader, no apt-get.
    const bash = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'bash')).find((path) => existsSync(path));
    symlinkSync(bash!, join(bin, 'bash'));
    const reports = setUpSystem({ PATH: bin, HOME: tempDir() });
    expect(reports).toEqual([
      { script: 'scripts/setup-vulkan.sh', state: 'missing', detail: expect.stringMatching(/no usable Vulkan driver.*needs apt-get as root or with sudo/s) },
      { script: 'scripts/setup-redis.sh', state: 'missing', detail: expect.stringMatching(/no redis-server on the PATH.*needs apt-get/s) },
      { script: 'scripts/setup-chromium.sh', state: 'missing', detail: expect.stringMatching(/no chromium on the PATH.*needs apt-get/s) },
    ]);
  });
});
