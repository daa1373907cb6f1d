import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// Cross-origin isolation (these two headers) lets tfjs run wasm on every core.
const isolated = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  resolve: {
    // In your app, `npm install nomic-embed-tfjs` does this; here the demo uses this checkout's build.
    alias: { 'nomic-embed-tfjs': fileURLToPath(new URL('../../dist/browser/index.js', import.meta.url)) },
  },
  // The package names its .wasm files and its worker by `new URL(…, import.meta.url)`, which pre-bundling would break.
  optimizeDeps: { exclude: ['nomic-embed-tfjs'] },
  // The worker imports WebGPU's backend on demand: a module worker.
  worker: { format: 'es' },
  build: { target: 'es2022' },
  server: { headers: isolated },
  preview: { headers: isolated },
});
