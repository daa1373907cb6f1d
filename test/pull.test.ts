import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DownloadError, fileHash, pull } from '../src/download/pull.js';
import { fixtureDir } from './helpers/fixtures.js';
import { startHub, type HubFault } from './helpers/hub-server.js';
import { tempDir } from './helpers/tmp.js';

const source = fixtureDir('nomic-tiny');
const FILES = ['config.json', 'tokenizer.json', 'model.safetensors'];
const root = tempDir();
let counter = 0;
const weightsDir = () => join(root, `w${counter++}`);
const digest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Runs `body` against a hub serving the fixture, closing it after. */
async function withHub(fault: HubFault, body: (hub: Awaited<ReturnType<typeof startHub>>) => Promise<void>, files = FILES) {
  const hub = await startHub(source, files, fault);
  try {
    await body(hub);
  } finally {
    await hub.close();
  }
}

describe('pull from a hub on 127.0.0.1 that behaves like huggingface.co', () => {
  it('downloads every file into weights/<name>, verified, skipping the optional one the repo lacks', async () => {
    await withHub({}, async (hub) => {
      const done: string[] = [];
      const dir = await pull({ repo: 'nomic-ai/nomic-embed-text-v1.5', weightsDir: weightsDir(), endpoint: hub.endpoint, onFileDone: (f, s) => done.push(`${f}:${s}`) });
      expect(dir.endsWith('nomic-embed-text-v1.5')).toBe(true);
      for (const f of FILES) expect(digest(join(dir, f))).toBe(digest(join(source, f)));
      expect(done).toEqual(['config.json:downloaded', 'tokenizer.json:downloaded', 'tokenizer_config.json:absent', 'model.safetensors:downloaded']);
      expect(readdirSync(dir).some((f) => f.endsWith('.partial'))).toBe(false);
      // The weights came from the CDN the hub redirected to; metadata from the hub's own answers.
      expect(hub.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/cdn/'))).toHaveLength(1);
      expect(hub.requests.filter((r) => r.method === 'HEAD' && r.path.startsWith('/cdn/'))).toHaveLength(0);
      // A second pull finds everything complete and downloads nothing.
      const before = hub.requests.filter((r) => r.method === 'GET').length;
      await pull({ repo: 'nomic-ai/nomic-embed-text-v1.5', weightsDir: join(dir, '..'), endpoint: hub.endpoint });
      expect(hub.requests.filter((r) => r.method === 'GET').length).toBe(before);
    });
  });

  it('verifies the weights against the SHA-256 on the redirect, and rejects a hub that lies about it', async () => {
    await withHub({ lieAboutHash: ['model.safetensors'] }, async (hub) => {
      const dir = weightsDir();
      const error = await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DownloadError);
      expect((error as Error).message).toMatch(/model\.safetensors: the downloaded file does not match the SHA-256 the hub announced/);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
      expect(existsSync(join(dir, 'model', 'model.safetensors.partial'))).toBe(false);
    });
  });

  it('verifies small files against their git blob SHA-1, and rejects a hub that lies about it', async () => {
    await withHub({ lieAboutHash: ['tokenizer.json'] }, async (hub) => {
      const dir = weightsDir();
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(
        /tokenizer\.json: the downloaded file does not match the git blob SHA-1/,
      );
      expect(existsSync(join(dir, 'model', 'tokenizer.json'))).toBe(false);
      // The one before it was verified and kept.
      expect(digest(join(dir, 'model', 'config.json'))).toBe(digest(join(source, 'config.json')));
    });
  });

  it('computes git blob ids as git does', async () => {
    // `printf 'hello\n' | git hash-object --stdin`
    const path = join(root, 'hello.txt');
    (await import('node:fs')).writeFileSync(path, 'hello\n');
    expect(await fileHash(path, 'git-sha1')).toBe('ce013625030ba8dba906f756967f9e9ca394464a');
  });

  it('rejects and deletes a corrupted download', async () => {
    await withHub({ corrupt: ['model.safetensors'] }, async (hub) => {
      const dir = weightsDir();
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(/does not match the SHA-256/);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
      expect(existsSync(join(dir, 'model', 'model.safetensors.partial'))).toBe(false);
    });
  });

  it('resumes an interrupted download with a range request to the CDN', async () => {
    await withHub({ cutAfter: { 'model.safetensors': 3_000_000 } }, async (hub) => {
      const dir = weightsDir();
      const first = await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(DownloadError);
      expect((first as Error).message).toMatch(/interrupted after \d+ bytes.*run the same command again to resume/);
      const partial = join(dir, 'model', 'model.safetensors.partial');
      const kept = statSync(partial).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThanOrEqual(3_000_000);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
      await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint });
      expect(hub.requests.filter((r) => r.path.startsWith('/cdn/') && r.method === 'GET').map((r) => r.range)).toEqual([undefined, `bytes=${kept}-`]);
      expect(digest(join(dir, 'model', 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
    });
  });

  it('starts over when the server ignores the range', async () => {
    await withHub({ cutAfter: { 'model.safetensors': 1_000_000 }, ignoreRange: true }, async (hub) => {
      const dir = weightsDir();
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(DownloadError);
      await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint });
      expect(digest(join(dir, 'model', 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
    });
  });

  it('starts over when the server answers a range it was not asked for', async () => {
    await withHub({ cutAfter: { 'model.safetensors': 1_000_000 }, wrongRange: true }, async (hub) => {
      const dir = weightsDir();
      await expect(pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(DownloadError);
      await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint });
      expect(digest(join(dir, 'model', 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
      // The mislabelled answer was dropped and the file fetched whole.
      expect(hub.requests.filter((r) => r.path.startsWith('/cdn/') && r.method === 'GET').at(-1)!.range).toBeUndefined();
    });
  });

  it('says so when the disk is full, keeps what it has, and leaves nothing under the final name', async () => {
    await withHub({}, async (hub) => {
      const dir = weightsDir();
      mkdirSync(join(dir, 'model'), { recursive: true });
      // Writing to /dev/full fails with ENOSPC, as a full disk does.
      symlinkSync('/dev/full', join(dir, 'model', 'model.safetensors.partial'));
      const error = await pull({ repo: 'a/model', weightsDir: dir, endpoint: hub.endpoint }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DownloadError);
      expect((error as Error).message).toMatch(/cannot write .*model\.safetensors\.partial \(ENOSPC\); free some space/);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
    });
  });

  it('sends HF_TOKEN to the hub only, never to the CDN, and explains a refusal', async () => {
    await withHub({ token: 'secret' }, async (hub) => {
      await expect(pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, token: 'wrong' })).rejects.toThrow(/HTTP 401.*HF_TOKEN/);
      await pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, token: 'secret' });
      const cdn = hub.requests.filter((r) => r.path.startsWith('/cdn/'));
      expect(cdn.length).toBeGreaterThan(0);
      expect(cdn.every((r) => r.authorization === undefined)).toBe(true);
    });
  });

  it('follows the relative redirect of a renamed repository', async () => {
    await withHub({}, async (hub) => {
      const dir = await pull({ repo: 'old/model', weightsDir: weightsDir(), endpoint: hub.endpoint });
      expect(digest(join(dir, 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
      expect(hub.requests.some((r) => r.path.startsWith('/new-owner/model/'))).toBe(true);
    });
  });

  it.each([
    ['a relative CDN path', 'a/model'],
    ['a renamed repository, then a relative CDN path', 'old/model'],
  ])('keeps the SHA-256 announced through %s, and rejects a corrupted file of the right size', async (_, repo) => {
    await withHub({ relativeCdn: true, corrupt: ['model.safetensors'] }, async (hub) => {
      const dir = weightsDir();
      await expect(pull({ repo, weightsDir: dir, endpoint: hub.endpoint })).rejects.toThrow(/model\.safetensors: the downloaded file does not match the SHA-256/);
      expect(existsSync(join(dir, 'model', 'model.safetensors'))).toBe(false);
    });
  });

  it('sends the token to the hub but not to a CDN on its own origin, and asks no metadata of the CDN', async () => {
    await withHub({ relativeCdn: true, token: 'secret' }, async (hub) => {
      const dir = await pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, token: 'secret' });
      expect(digest(join(dir, 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
      const cdn = hub.requests.filter((r) => r.path.startsWith('/cdn/'));
      expect(cdn.map((r) => r.method)).toEqual(['GET']);
      expect(cdn[0].authorization).toBeUndefined();
      expect(hub.requests.filter((r) => r.path.includes('/resolve/')).every((r) => r.authorization === 'Bearer secret')).toBe(true);
    });
  });

  it('accepts a file for which the hub announces no hash only with a warning saying so', async () => {
    await withHub({ noHash: ['model.safetensors', 'config.json'] }, async (hub) => {
      const warnings: string[] = [];
      const dir = await pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint, onWarning: (m) => warnings.push(m) });
      expect(digest(join(dir, 'model.safetensors'))).toBe(digest(join(source, 'model.safetensors')));
      expect(warnings).toHaveLength(2);
      expect(warnings[0]).toMatch(/^config\.json: .* announced no hash, so the download could not be verified \(only its size was checked\)/);
      expect(warnings[1]).toMatch(/^model\.safetensors: .* announced no hash/);
    });
  });

  it('names a missing required file and a bad repository', async () => {
    await withHub(
      {},
      async (hub) => {
        await expect(pull({ repo: 'a/model', weightsDir: weightsDir(), endpoint: hub.endpoint })).rejects.toThrow(/tokenizer\.json: not found on the hub/);
        await expect(pull({ repo: 'not a repo', weightsDir: weightsDir(), endpoint: hub.endpoint })).rejects.toThrow(/owner\/name/);
      },
      ['config.json'],
    );
  });
});
