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
source "$(dirname "$0")/apt-install.sh"
apt_install setup-chromium "install chromium by hand" chromium
echo "setup-chromium: installed $(chromium --version 2>/dev/null | head -c 60) at $(command -v chromium)"
