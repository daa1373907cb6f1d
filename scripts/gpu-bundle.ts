/**
 * npm run gpu-bundle [-- --out DIR]
 *
 * Writes one folder (default gpu-bundle/) that runs the GPU check on a Linux
 * x64 machine with Node 20 and a GPU driver, without network or npm:
 * `sh gpu-bundle/run.sh`. It holds the built code, only the runtime files of
 * the packages the webgpu path loads (Dawn's Linux x64 binary alone of its
 * builds), the test fixtures and benchmark texts, and the Vulkan loader
 * (libvulkan.so.1) for hosts that lack it.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'gpu-bundle') } } });
const out = values.out!;
const app = join(out, 'app');
const LIMIT_BYTES = 60 * 2 ** 20;

/** Per runtime package, the files Node loads from it (the package.json of each comes too). */
const PACKAGES: Record<string, string[]> = {
  '@tensorflow/tfjs-core': ['dist/tf-core.node.js'],
  '@tensorflow/tfjs-backend-cpu': ['dist/tf-backend-cpu.node.js'],
  '@tensorflow/tfjs-backend-wasm': ['dist/tf-backend-wasm.node.js', 'dist/tfjs-backend-wasm.wasm', 'dist/tfjs-backend-wasm-simd.wasm'],
  '@tensorflow/tfjs-backend-webgpu': ['dist/tf-backend-webgpu.node.js'],
  '@huggingface/tokenizers': ['dist/tokenizers.mjs'],
  seedrandom: ['index.js', 'seedrandom.js', 'lib'],
  webgpu: ['index.js', 'dist/linux-x64/dawn.node'],
};

rmSync(out, { recursive: true, force: true });
mkdirSync(app, { recursive: true });
execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.gpu-bundle.json'), '--outDir', app], { stdio: 'inherit' });
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'nomic-embed-gpu-check', private: true, type: 'module' }, null, 2));

for (const [pkg, files] of Object.entries(PACKAGES)) {
  for (const file of ['package.json', ...files]) {
    const target = join(app, 'node_modules', pkg, file);
    mkdirSync(dirname(target), { recursive: true });
    cpSync(join(ROOT, 'node_modules', pkg, file), target, { recursive: true, filter: (source) => !source.endsWith('.min.js') });
  }
}

const fixtures = join(app, 'test', 'fixtures');
for (const fixture of ['nomic-tiny', 'nomic-tiny-ntk']) {
  for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'reference.json']) {
    mkdirSync(join(fixtures, fixture), { recursive: true });
    copyFileSync(join(ROOT, 'test/fixtures', fixture, file), join(fixtures, fixture, file));
  }
}
mkdirSync(join(fixtures, 'nomic-embed-text-v1.5'), { recursive: true });
copyFileSync(join(ROOT, 'test/fixtures/nomic-embed-text-v1.5/tokenizer.json'), join(fixtures, 'nomic-embed-text-v1.5/tokenizer.json'));
cpSync(join(ROOT, 'bench'), join(app, 'bench'), { recursive: true });

const loader = systemVulkanLoader();
if (loader !== undefined) {
  mkdirSync(join(out, 'lib'));
  copyFileSync(loader, join(out, 'lib', 'libvulkan.so.1'));
}
writeFileSync(
  join(out, 'run.sh'),
  `#!/bin/sh
# Runs the GPU check: sh run.sh [--quick] [--parity-only] [--json FILE]
DIR=$(cd "$(dirname "$0")" && pwd)
# The Vulkan loader: the host's, else the one carried here.
if ! ldconfig -p 2>/dev/null | grep 'libvulkan\\.so\\.1' >/dev/null && [ -e "$DIR/lib/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$DIR/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# NVIDIA's driver, where the container puts its Vulkan ICD outside the loader's search path.
if [ -z "$VK_DRIVER_FILES" ] && [ -z "$VK_ICD_FILENAMES" ] && ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1 \\
   && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
exec node "$DIR/app/scripts/gpu-check.js" "$@"
`,
);
chmodSync(join(out, 'run.sh'), 0o755);

const size = folderSize(out);
console.log(`wrote ${relative(process.cwd(), out) || out}: ${(size / 2 ** 20).toFixed(1)} MiB; run it with: sh ${join(relative(process.cwd(), out), 'run.sh')}`);
if (size > LIMIT_BYTES) throw new Error(`the bundle is ${(size / 2 ** 20).toFixed(1)} MiB, over its ${LIMIT_BYTES / 2 ** 20} MiB limit`);

function systemVulkanLoader(): string | undefined {
  const listing = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const match = /libvulkan\.so\.1 \(libc6,x86-64\) => (\S+)/.exec(listing);
  return match?.[1];
}

function folderSize(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => {
    const path = join(dir, name);
    const stat = statSync(path);
    return sum + (stat.isDirectory() ? folderSize(path) : stat.size);
  }, 0);
}

