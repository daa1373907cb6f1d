#!/usr/bin/env bash
# Installs redis-server for the queue tests (they start their own on a loopback
# port). Idempotent: a no-op where redis-server is already on the PATH.
# With --check it only says whether it is there (exit 0) or not (exit 3).
set -euo pipefail
if command -v redis-server >/dev/null; then
  echo "setup-redis: $(redis-server --version | head -c 60)"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "setup-redis: no redis-server on the PATH"
  exit 3
fi
source "$(dirname "$0")/apt-install.sh"
apt_install setup-redis "install redis-server by hand" redis-server
echo "setup-redis: installed $(redis-server --version | head -c 60)"
