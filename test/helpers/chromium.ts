import { describe } from 'vitest';
import { chromiumPath } from '../../scripts/browser/chromium.js';

export { bundleBrowserEntry, eagerBytes, launchChromium } from '../../scripts/browser/chromium.js';

/**
 * `describe` where chromium runs; elsewhere `describe.skip`, with a message
 * naming the script that installs it. Under CI=true a missing chromium fails.
 */
export function chromiumSuite(): typeof describe {
  if (chromiumPath() !== undefined) return describe;
  const message = 'no chromium on the PATH; run scripts/setup-chromium.sh';
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`skipping the browser tests: ${message}`);
  return describe.skip as unknown as typeof describe;
}

