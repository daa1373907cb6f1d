/**
 * The script `createEmbedderWorker` starts as a module Worker by default: it
 * serves one embedder to the page.
 */
import { serveEmbedder, type MessageScope } from './worker.js';

serveEmbedder(globalThis as unknown as MessageScope);
