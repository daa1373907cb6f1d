import type { EmbedCall, EmbedCallResult } from '../embed-call.js';

/** What every API's routes need from the server. */
export interface ApiContext {
  /** The name clients give as `model`. */
  readonly servedModelName: string;
  readonly maxRequestTexts: number;
  /** Task prefix for requests that name none. */
  readonly defaultTask: string | undefined;
  /** Validates, queues and runs one call; `signal` aborts when the client goes away. */
  embed(call: EmbedCall, signal: AbortSignal): Promise<EmbedCallResult>;
}
