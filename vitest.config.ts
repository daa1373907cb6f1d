import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Installs what the suite needs from the system where it is missing and it can (scripts/setup-*.sh),
    // then assembles the WebAssembly kernels (scripts/build-wasm.ts) from their current source.
    globalSetup: ['test/helpers/system-setup.ts', 'test/helpers/build-wasm.ts'],
    // Each file sets its own tfjs backend; separate processes keep them apart.
    pool: 'forks',
    testTimeout: 120_000,
    // The JSON report lets .ci/run print a plain closing line of counts.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    hookTimeout: 120_000,
  },
});
