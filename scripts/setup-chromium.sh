#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests, which drive it headless
# through its executablePath (no test downloads a browser of its own).
# Idempotent: a no-op where chromium is already on the PATH.
# With --check it only says whether it is there (exit 0) or not (exit 3).
set -euo pipefail
if command -v chromium >/dev/null; then
  echo "setup-chromium: $(chromium --version 2>/dev/null | head -c 60) at $(command -v chromium)"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "setup-chromium: no chromium on the PATH"
  exit 3
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-chromium: no apt-get here; install chromium by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "setup-chromium: installed $(chromium --version 2>/dev/null | head -c 60) at $(command -v chromium)"
