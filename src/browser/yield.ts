/**
 * Lets the thread's event loop run: input events on a page's main thread, an
 * abort message in a worker. A wasm or cpu batch computes synchronously and
 * its read-back settles as a microtask, so without this a whole call's
 * batches run back to back and nothing else gets a turn. A message to a
 * fresh channel: an ordinary task, behind those already queued (timers,
 * messages, input), unlike `scheduler.yield`, whose continuation goes first;
 * and not clamped to 4 ms as a nested setTimeout is.
 */
export function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const { port1, port2 } = new MessageChannel() as unknown as { port1: { onmessage: (() => void) | null; close(): void }; port2: { postMessage(message: unknown): void } };
      port1.onmessage = () => {
        port1.close();
        resolve();
      };
      port2.postMessage(undefined);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}
