import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** What the suite needs from the system, each installed by an idempotent script that also answers `--check`. */
export const SYSTEM_PIECES = [
  { script: 'scripts/setup-vulkan.sh', needed: 'the WebGPU tests (a software Vulkan device where there is no GPU driver)' },
  { script: 'scripts/setup-redis.sh', needed: 'the queue tests (redis-server)' },
  { script: 'scripts/setup-chromium.sh', needed: 'the browser tests (chromium, driven headless)' },
] as const;

export interface PieceReport {
  readonly script: string;
  readonly state: 'present' | 'installed' | 'missing';
  /** What the script said, or why it was not run. */
  readonly detail: string;
}

/**
 * Checks each piece and installs what is missing where this user can (apt-get,
 * as root or with password-less sudo). What stays missing is reported by name,
 * and the tests that need it skip (their helpers say so) or, under CI=true, fail.
 */
export function setUpSystem(env: NodeJS.ProcessEnv = process.env): PieceReport[] {
  const bash = onPath('bash', env) ?? '/bin/bash';
  const run = (script: string, args: string[]) => {
    const r = spawnSync(bash, [join(ROOT, script), ...args], { env, encoding: 'utf8' });
    return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
  };
  const installable = canInstall(env);
  return SYSTEM_PIECES.map(({ script }) => {
    const check = run(script, ['--check']);
    if (check.ok) return { script, state: 'present', detail: check.output };
    if (!installable) return { script, state: 'missing', detail: `${check.output}; not installed: that needs apt-get as root or with sudo` };
    const install = run(script, []);
    // Trust the check, not the installer's exit status: a package can be installed and its program still absent.
    if (!install.ok) return { script, state: 'missing', detail: install.output };
    const after = run(script, ['--check']);
    return after.ok ? { script, state: 'installed', detail: install.output } : { script, state: 'missing', detail: `${install.output}\n${after.output}` };
  });
}

function canInstall(env: NodeJS.ProcessEnv): boolean {
  if (onPath('apt-get', env) === undefined) return false;
  if (process.getuid?.() === 0) return true;
  return onPath('sudo', env) !== undefined && spawnSync('sudo', ['-n', 'true'], { env }).status === 0;
}

function onPath(command: string, env: NodeJS.ProcessEnv): string | undefined {
  return (env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, command))
    .find((path) => existsSync(path));
}

/** vitest's global set-up: one line per piece, before any test file runs. */
export default function setup(): void {
  for (const { script, state, detail } of setUpSystem()) {
    const needed = SYSTEM_PIECES.find((p) => p.script === script)!.needed;
    const line = `system set-up, ${script}: ${state}${state === 'present' ? '' : ` (${detail})`}`;
    if (state === 'missing') console.warn(`${line}; ${needed} will be skipped, or fail under CI=true; run ${script}`);
    else console.log(line);
  }
}
