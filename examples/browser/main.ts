import { cosineTopK, createEmbedderWorker, type PageBackendChoice } from 'nomic-embed-tfjs';
import { SENTENCES } from './sentences.js';

// ?model=<hub id or folder URL>&backend=<auto|webgpu|wasm|cpu>: the real model from the hub by default.
const params = new URLSearchParams(location.search);
const model = params.get('model') ?? 'nomic-ai/nomic-embed-text-v1.5';
const backend = (params.get('backend') ?? 'auto') as PageBackendChoice;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const progress = $<HTMLProgressElement>('progress');
const progressLabel = $('progress-label');
const status = $('status');

async function main(): Promise<void> {
  const started = performance.now();
  const embedder = await createEmbedderWorker(model, {
    backend,
    onProgress: (file, loaded, total) => {
      if (!file.endsWith('.safetensors')) return;
      progress.value = total ? loaded / total : 0;
      progressLabel.textContent = `Downloading ${file} (${mib(loaded)}${total ? ` of ${mib(total)}` : ''}; kept in the browser's cache for next time)`;
    },
  });
  const adapter = embedder.device ? `, ${embedder.device.description || embedder.device.architecture || embedder.device.vendor}${embedder.device.software ? ' (software)' : ''}` : '';
  $('runtime').textContent = `${embedder.modelName} on ${embedder.backend}${adapter}${embedder.backend === 'wasm' ? `, ${embedder.threads} thread${embedder.threads > 1 ? 's' : ''}` : ''}`;
  progress.value = 1;
  progressLabel.textContent = `Embedding ${SENTENCES.length} sentences…`;
  const { embeddings: corpus } = await embedder.embed(SENTENCES, {
    task: 'search_document',
    onProgress: (done, total) => (progress.value = done / total),
  });
  $('loading').hidden = true;
  status.textContent = `Ready: ${SENTENCES.length} sentences indexed in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
  status.dataset.state = 'ready';
  const query = $<HTMLInputElement>('query');
  query.disabled = false;
  $<HTMLButtonElement>('go').disabled = false;
  query.focus();

  $('search').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (query.value.trim() === '') return;
    const t0 = performance.now();
    const { embeddings } = await embedder.embed([query.value], { task: 'search_query' });
    const best = cosineTopK(embeddings[0], corpus, 10);
    const list = $('results');
    list.replaceChildren(
      ...best.map(({ index, score }) => {
        const item = document.createElement('li');
        const value = document.createElement('span');
        value.className = 'score';
        value.textContent = score.toFixed(3);
        item.append(value, SENTENCES[index]);
        return item;
      }),
    );
    status.textContent = `${best.length} best of ${SENTENCES.length} in ${(performance.now() - t0).toFixed(0)} ms.`;
    status.dataset.state = 'searched';
  });
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

main().catch((error: Error) => {
  progressLabel.textContent = `Could not load ${model}: ${error.message}`;
  status.dataset.state = 'failed';
  console.error(error);
});
