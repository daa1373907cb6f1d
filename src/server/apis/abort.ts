import type { FastifyReply } from 'fastify';

/**
 * A signal that aborts when the client goes away before its answer is sent,
 * so its queued texts are dropped before they are computed. The response's
 * 'close' comes either after the answer was sent or when the connection died.
 */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
