import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedModel, cachedModelDir, COMPLETE_MARKER, isHubId, offlineByEnvironment } from '../src/download/model-cache.js';
import { loadEmbedder } from '../src/embedder.js';
import { DownloadError, InputError, ModelFilesError } from '../src/errors.js';
import { expectClose, fixtureDir, reference, TOLERANCE } from './helpers/fixtures.js';
import { startHub, type HubFault } from './helpers/hub-server.js';
import { tempDir } from './helpers/tmp.js';

const MODEL = fixtureDir('nomic-tiny');
const REPO = 'nomic-ai/nomic-embed-text-v1.5';
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors'];
const LOAD = { backend: 'wasm', threads: 1 } as const;
const text = reference('nomic-tiny').texts[0];

async function withHub(fault: HubFault, body: (hub: Awaited<ReturnType<typeof startHub>>) => Promise<void>) {
  const hub = await startHub(MODEL, FILES, fault);
  try {
    await body(hub);
  } finally {
    await hub.close();
  }
}

const weightGets = (hub: Awaited<ReturnType<typeof startHub>>) => hub.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/cdn/')).length;

describe('models by hub id, downloaded into the cache on first use', () => {
  it('the first load downloads the model and embeds like the reference; the second makes no request', async () => {
    const cacheDir = tempDir();
    await withHub({}, async (hub) => {
      const progress: string[] = [];
      const first = await loadEmbedder(REPO, { ...LOAD, cacheDir, endpoint: hub.endpoint, onProgress: (file) => progress.push(file) });
      try {
        expect(first.modelDir).toBe(join(cacheDir, 'nomic-ai--nomic-embed-text-v1.5', 'main'));
        expect(first.modelName).toBe('nomic-embed-text-v1.5');
        expect(progress).toContain('model.safetensors');
        const { embeddings } = await first.embed([text.text]);
        expectClose(embeddings[0], text.embedding, TOLERANCE.embedding, 'downloaded model');
      } finally {
        await first.dispose();
      }
      expect(weightGets(hub)).toBe(1);
      expect(existsSync(join(first.modelDir!, COMPLETE_MARKER))).toBe(true);

      const requests = hub.requests.length;
      const second = await loadEmbedder(REPO, { ...LOAD, cacheDir, endpoint: hub.endpoint });
      await second.dispose();
      expect(second.modelDir).toBe(first.modelDir);
      expect(hub.requests.length).toBe(requests);
    });
  });

  it('keeps one folder per revision and asks the hub for that revision', async () => {
    const cacheDir = tempDir();
    await withHub({}, async (hub) => {
      const dir = await cachedModel(REPO, { revision: 'v1.5', cacheDir, endpoint: hub.endpoint });
      expect(dir).toBe(cachedModelDir(REPO, 'v1.5', cacheDir));
      expect(dir).not.toBe(cachedModelDir(REPO, 'main', cacheDir));
      expect(hub.requests.filter((r) => !r.path.startsWith('/cdn/')).every((r) => r.path.includes('/resolve/v1.5/'))).toBe(true);
    });
  });

  it('offline, a model missing from the cache is an error naming it, and no request is made', async () => {
    const cacheDir = tempDir();
    await withHub({}, async (hub) => {
      const load = loadEmbedder(REPO, { ...LOAD, cacheDir, endpoint: hub.endpoint, offline: true });
      await expect(load).rejects.toThrow(ModelFilesError);
      await expect(load).rejects.toThrow(/nomic-ai\/nomic-embed-text-v1\.5 \(revision main\) is not in the cache, and offline mode/);
      expect(hub.requests).toHaveLength(0);
    });
  });

  it('HF_HUB_OFFLINE=1 means offline; offline, a cached model still loads', async () => {
    const cacheDir = tempDir();
    const saved = process.env.HF_HUB_OFFLINE;
    try {
      process.env.HF_HUB_OFFLINE = '1';
      expect(offlineByEnvironment()).toBe(true);
      await expect(cachedModel(REPO, { cacheDir })).rejects.toThrow(/offline mode/);
      await withHub({}, async (hub) => {
        // Asked to download outright, it does: offline applies to loads.
        await cachedModel(REPO, { cacheDir, endpoint: hub.endpoint, offline: false });
        const requests = hub.requests.length;
        expect(await cachedModel(REPO, { cacheDir, endpoint: hub.endpoint })).toBe(cachedModelDir(REPO, 'main', cacheDir));
        expect(hub.requests.length).toBe(requests);
      });
      process.env.HF_HUB_OFFLINE = '0';
      expect(offlineByEnvironment()).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_OFFLINE;
      else process.env.HF_HUB_OFFLINE = saved;
    }
  });

  it('a corrupted download leaves nothing cached under the final name, and the next use downloads it again', async () => {
    const cacheDir = tempDir();
    const dir = cachedModelDir(REPO, 'main', cacheDir);
    await withHub({ corrupt: ['model.safetensors'] }, async (hub) => {
      await expect(loadEmbedder(REPO, { ...LOAD, cacheDir, endpoint: hub.endpoint })).rejects.toThrow(DownloadError);
    });
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(dir, COMPLETE_MARKER))).toBe(false);
    expect(readdirSync(cacheDir).some((f) => f.endsWith('.lock'))).toBe(false);
    await withHub({}, async (hub) => {
      const embedder = await loadEmbedder(REPO, { ...LOAD, cacheDir, endpoint: hub.endpoint });
      await embedder.dispose();
      expect(weightGets(hub)).toBe(1);
    });
    expect(existsSync(join(dir, COMPLETE_MARKER))).toBe(true);
  });

  it('an interrupted download is not cached; the next use resumes it', async () => {
    const cacheDir = tempDir();
    await withHub({ cutAfter: { 'model.safetensors': 100_000 } }, async (hub) => {
      const dir = cachedModelDir(REPO, 'main', cacheDir);
      await expect(cachedModel(REPO, { cacheDir, endpoint: hub.endpoint })).rejects.toThrow(DownloadError);
      expect(existsSync(join(dir, COMPLETE_MARKER))).toBe(false);
      expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
      // How much of the cut body reached the disk depends on the write stream; the resume starts there.
      const kept = statSync(join(dir, 'model.safetensors.partial')).size;
      await cachedModel(REPO, { cacheDir, endpoint: hub.endpoint });
      const last = hub.requests.filter((r) => r.path.startsWith('/cdn/')).at(-1);
      expect(last?.range).toBe(kept > 0 ? `bytes=${kept}-` : undefined);
      expect(existsSync(join(dir, COMPLETE_MARKER))).toBe(true);
    });
  });

  it('waits while another live process holds the download lock, then finds the model it finished', async () => {
    const cacheDir = tempDir();
    const dir = cachedModelDir(REPO, 'main', cacheDir);
    mkdirSync(join(dir, '..'), { recursive: true });
    // This process's own pid: alive, so the lock is not stale.
    writeFileSync(`${dir}.lock`, JSON.stringify({ host: hostname(), pid: process.pid }));
    await withHub({}, async (hub) => {
      let waited = 0;
      const pending = cachedModel(REPO, { cacheDir, endpoint: hub.endpoint, onWait: () => waited++ });
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(waited).toBe(1);
      expect(hub.requests).toHaveLength(0);
      // The "other process" finishes: its marker is in place, then its lock is gone.
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, COMPLETE_MARKER), '{}');
      rmSync(`${dir}.lock`);
      expect(await pending).toBe(dir);
      expect(hub.requests).toHaveLength(0);
    });
  });

  it('takes over a lock left by a process that died', async () => {
    const cacheDir = tempDir();
    const dir = cachedModelDir(REPO, 'main', cacheDir);
    mkdirSync(join(dir, '..'), { recursive: true });
    // Beyond the default pid_max, so no process has it.
    writeFileSync(`${dir}.lock`, JSON.stringify({ host: hostname(), pid: 2 ** 22 + 1 }));
    await withHub({}, async (hub) => {
      expect(await cachedModel(REPO, { cacheDir, endpoint: hub.endpoint, onWait: () => expect.fail('waited for a dead process') })).toBe(dir);
    });
    expect(existsSync(join(dir, COMPLETE_MARKER))).toBe(true);
    expect(existsSync(`${dir}.lock`)).toBe(false);
  });

  it('tells folders from hub ids: a path that exists is a folder, and is never downloaded into', async () => {
    expect(isHubId(REPO)).toBe(true);
    expect(isHubId('test/fixtures')).toBe(false);
    expect(isHubId(MODEL)).toBe(false);
    expect(isHubId('just-a-name')).toBe(false);
    await expect(loadEmbedder(MODEL, { ...LOAD, revision: 'main' })).rejects.toThrow(InputError);
    await expect(loadEmbedder(MODEL, { ...LOAD, revision: 'main' })).rejects.toThrow(/revision: applies to a hub repository id/);
  });

  it.each([
    [{ revision: '' }, /revision: must be a non-empty string/],
    [{ cacheDir: 3 }, /cacheDir: must be a non-empty string, got number 3/],
    [{ offline: 'yes' }, /offline: must be a boolean/],
    [{ onProgress: 'log' }, /onProgress: must be a function/],
  ])('rejects the bad option %j before any download', async (options, message) => {
    await expect(loadEmbedder(REPO, options as never)).rejects.toThrow(InputError);
    await expect(loadEmbedder(REPO, options as never)).rejects.toThrow(message);
  });

  it('rejects a source that is not a non-empty string', async () => {
    await expect(loadEmbedder('' as never)).rejects.toThrow(/source: must be a model folder or a hub repository id/);
    await expect(loadEmbedder(undefined as never)).rejects.toThrow(InputError);
  });
});
