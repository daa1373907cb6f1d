import { selectBackend, type BackendName } from '../../src/backends/select.js';

/** The backends every machine has; the parity suite runs on each. */
export const PORTABLE_BACKENDS = ['cpu', 'wasm'] as const satisfies readonly BackendName[];

/** Activates a backend the way the library does (with its kernel fixes). */
export async function useBackend(name: BackendName): Promise<void> {
  await selectBackend(name);
}
