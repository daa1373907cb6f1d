import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { getCurrentTest } from 'vitest/suite';

/**
 * A fresh temporary folder, removed when the test that asked for it ends or,
 * asked for outside a test, when the test file finishes. (An `afterAll`
 * registered from inside a test never runs: the folder would stay behind.)
 */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nomic-embed-test-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  if (getCurrentTest()) onTestFinished(remove);
  else afterAll(remove);
  return dir;
}
