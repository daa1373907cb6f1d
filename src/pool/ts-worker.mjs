// Starts the worker from its TypeScript source when the package runs unbuilt
// (its own test suite); the published package runs worker.js directly.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
