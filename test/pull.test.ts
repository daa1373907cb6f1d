import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DownloadError, pull } from '../src/download/pull.js';
import { fixtureDir } from './helpers/fixtures.js';
import { startHub } from './helpers/hub-server.js';
import { tempDir } from './helpers/tmp.js';

const source = fixtureDir('nomic-tiny');
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors'];
const root = tempDir();
let counter = 0;
const weightsDir = () => join(root, `w${counter++}`);
const digest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('pull from a hub on 127.0.0.1', () => {
  it('downloads every file into weights/<name>, verified, skipping the optional one the repo lacks', async () => {
    const hub = await startHub(source, FILES);
    const done: string[] = [];
    try {
      const dir = await pull({ repo: 'nomic-ai/nomic-embed-text-v1.5', weightsDir: weightsDir(), endpoint: hub.endpoint, onFileDone: (f, s) => done.push(`${f}:${s}`) });
      expect(dir.endsWith('nomic-embed-text-v1.5')).toBe(true);
      for (const f of FILES) expect(digest(join(dir, f))).toBe(digest(join(source, f)));
      expect(done).toEqual(['config.json:downloaded', 'tokenizer.json:downloaded', 'tokenizer_config.json:absent', 'model.safetensors:downloaded']);
      expect(readdirSync(dir).some((f) => f.endsWith('.partial'))).toBe(false);
      // A second pull finds everything complete and downloads nothing.
      const before = hub.requests.filter((r) => r.method === 'GET').length;
      await pull({ repo: 'nomic-ai/nomic-embed-text-v1.5', weightsDir: join(dir, '..'), endpoint: hub.endpoint });
      expect(hub.requests.filter((r) => r.method === 'GET').length).toBe(before);
    } finally {
      await hub.close();
    }
  });

  it('resumes an interrupted download with a range request', async () => {
    const hub = await startHub(source, FILES, { cutAfter: { 'model.safetensors': 3_000_000 } });
    const dir = weightsDir();
    try {
      const first = await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(DownloadError);
      expect((first as Error).message).toMatch(/run the same command again to resume/);
      const partial = join(dir, 'model', 'model.safetensors.partial');
      expect(statSync(partial).size).toBe(3_000_000);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
      await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint });
      expect(hub.requests.filter((r) => r.path.endsWith('model.safetensors') && r.method === 'GET').map((r) => r.range)).toEqual([
        undefined,
        'bytes=3000000-',
      ]);
      expect(digest(join(dir, 'model', 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
    } finally {
      await hub.close();
    }
  });

  it('starts over when the server ignores the range', async () => {
    const hub = await startHub(source, FILES, { cutAfter: { 'model.safetensors': 1_000_000 }, ignoreRange: true });
    const dir = weightsDir();
    try {
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(DownloadError);
      await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint });
      expect(digest(join(dir, 'model', 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
    } finally {
      await hub.close();
    }
  });

  it('rejects and deletes a corrupted download', async () => {
    const hub = await startHub(source, FILES, { corrupt: ['model.safetensors'] });
    const dir = weightsDir();
    try {
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(/does not match the SHA-256/);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
      expect(existsSync(join(dir, 'model', 'model.safetensors.partial'))).toBe(false);
    } finally {
      await hub.close();
    }
  });

  it('sends HF_TOKEN as a bearer token and explains a refusal', async () => {
    const hub = await startHub(source, FILES, { token: 'secret' });
    try {
      await expect(pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, token: 'wrong' })).rejects.toThrow(/HTTP 401.*HF_TOKEN/);
      await pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, token: 'secret' });
    } finally {
      await hub.close();
    }
  });

  it('names a missing required file and a bad repository', async () => {
    const hub = await startHub(source, ['config.json']);
    try {
      await expect(pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint })).rejects.toThrow(/tokenizer\.json: not found on the hub/);
      await expect(pull({ repo: 'not a repo', weightsDir: weightsDir(), endpoint: hub.endpoint })).rejects.toThrow(/owner\/name/);
    } finally {
      await hub.close();
    }
  });
});
