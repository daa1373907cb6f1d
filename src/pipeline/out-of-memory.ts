/**
 * Recognises each backend's own way of running out of memory, so the batch
 * processor retries those with smaller batches and nothing else:
 * - libtensorflow (tfjs-node, CUDA): `OOM when allocating tensor ...`, `Resource exhausted`;
 * - WebAssembly: failed heap growth (`Cannot enlarge memory`, `Out of memory`,
 *   `Aborted(...)` from an allocation, `WebAssembly.Memory(): could not allocate`);
 * - JavaScript (cpu backend): `Array buffer allocation failed`, `Invalid typed array length`.
 */
const PATTERNS: readonly RegExp[] = [
  /OOM when allocating/i,
  /resource[ _]exhausted/i,
  /out of memory/i,
  /cannot enlarge memory/i,
  /could not allocate memory/i,
  /failed to grow memory/i,
  /Aborted\(.*(OOM|memory|alloc)/i,
  /array buffer allocation failed/i,
  /invalid typed array length/i,
];

export function isOutOfMemory(error: unknown): boolean {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return PATTERNS.some((pattern) => pattern.test(message));
}
