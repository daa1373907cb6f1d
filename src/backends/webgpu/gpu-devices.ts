import { readdirSync } from 'node:fs';

/**
 * Whether a Linux machine exposes a GPU to this process: a render node
 * (/dev/dri/renderD*, AMD and Intel), an NVIDIA device (/dev/nvidia0) or
 * WSL's GPU (/dev/dxg). Without one, the only Vulkan device is a software one,
 * so `auto` need not start Dawn to find that out (Dawn also prints warnings
 * about llvmpipe's limits on every start). Other systems answer true.
 */
export function mayHaveGpu(platform: string = process.platform, list: (dir: string) => string[] = listDir): boolean {
  if (platform !== 'linux') return true;
  return list('/dev/dri').some((f) => f.startsWith('renderD')) || list('/dev').some((f) => /^nvidia\d+$/.test(f) || f === 'dxg');
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
