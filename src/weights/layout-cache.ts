import { existsSync, statSync } from 'node:fs';
import type { NomicBertConfig } from './config.js';
import { writeRuntimeLayout } from './convert.js';
import { CONVERTED_FORMAT_VERSION } from './load.js';
import { openCheckpoint } from './model-folder.js';
import { openSafetensors } from './safetensors-file.js';

/**
 * Checkpoints smaller than this load in well under a second in either layout;
 * a cache would only cost disk.
 */
export const LAYOUT_CACHE_MIN_BYTES = 64 * 2 ** 20;

/**
 * The file to load a checkpoint from. A Hugging Face checkpoint needs every
 * matrix transposed and the fused q/k/v cut at load (0.9 s of 1.5 s for the
 * real model); a large one is therefore converted once to the runtime layout,
 * next to it as `<name>.runtime.safetensors`, and later loads read that copy.
 * The copy records the source's size and modification time and is rebuilt
 * when they change. Where the folder is not writable, the original is loaded
 * as it is. `notice` is told when a conversion happens.
 */
export function runtimeLayoutFile(
  path: string,
  config: NomicBertConfig,
  notice: (message: string) => void = () => {},
  minBytes = LAYOUT_CACHE_MIN_BYTES,
): string {
  const source = statSync(path);
  if (source.size < minBytes) return path;
  const checkpoint = openCheckpoint(path, config);
  try {
    if (checkpoint.layout === 'runtime') return path;
    const cache = `${path.replace(/\.safetensors$/, '')}.runtime.safetensors`;
    const stamp = { source_bytes: String(source.size), source_mtime_ms: String(Math.trunc(source.mtimeMs)) };
    if (existsSync(cache) && isCurrent(cache, stamp)) return cache;
    try {
      notice(`converting ${path} to the runtime layout once; later loads read ${cache}`);
      writeRuntimeLayout(checkpoint, config, cache, 'F32', { source: path, ...stamp });
      return cache;
    } catch (error) {
      notice(`could not write ${cache} (${(error as Error).message}); loading ${path} as it is`);
      return path;
    }
  } finally {
    checkpoint.file.close();
  }
}

function isCurrent(cache: string, stamp: Record<string, string>): boolean {
  try {
    const file = openSafetensors(cache);
    file.close();
    const meta = file.metadata;
    return meta.format_version === CONVERTED_FORMAT_VERSION && meta.source_bytes === stamp.source_bytes && meta.source_mtime_ms === stamp.source_mtime_ms;
  } catch {
    return false;
  }
}
