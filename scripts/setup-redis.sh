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
if ! command -v apt-get >/dev/null; then
  echo "setup-redis: no apt-get here; install redis-server by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
echo "setup-redis: installed $(redis-server --version | head -c 60)"
