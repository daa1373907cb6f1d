#!/usr/bin/env bash
# Makes a Vulkan device available for the WebGPU backend (Dawn) where none is:
# on a machine without a GPU driver, Mesa's llvmpipe, a software Vulkan device.
# Dawn refuses Mesa older than 25 ("shaderUniform*ArrayDynamicIndexing
# required"), and Debian bookworm ships 22.3, so on bookworm the packages come
# from bookworm-backports. Idempotent: a no-op where a usable driver exists.
# With --check it only says whether one exists (exit 0) or not (exit 3).
set -euo pipefail

icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d)

# (grep -q would close the pipe early, and pipefail would count ldconfig's SIGPIPE as failure.)
has_loader() { [[ "$(ldconfig -p 2>/dev/null)" == *libvulkan.so.1* ]]; }

# A driver that Mesa's package did not install (NVIDIA's, a vendor's) counts as it is.
has_vendor_icd() {
  local d f
  for d in "${icd_dirs[@]}"; do
    for f in "$d"/*.json; do
      [ -e "$f" ] || continue
      dpkg -S "$f" 2>/dev/null | grep -q '^mesa-vulkan-drivers' || return 0
    done
  done
  return 1
}

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'
}

if has_loader && { has_vendor_icd || [ "$(mesa_major || echo 0)" -ge 25 ] 2>/dev/null; }; then
  echo "setup-vulkan: a Vulkan driver is present; nothing to do"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "setup-vulkan: no usable Vulkan driver (Mesa >= 25 or a vendor's)"
  exit 3
fi

if ! command -v apt-get >/dev/null; then
  echo "setup-vulkan: no apt-get here; install a Vulkan driver (Mesa >= 25 for a software device) by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
target=()
if [ "$codename" = "bookworm" ]; then
  list=/etc/apt/sources.list.d/bookworm-backports.list
  if [ ! -e "$list" ]; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
  fi
  target=(-t bookworm-backports)
fi

source "$(dirname "$0")/apt-install.sh"
apt_install setup-vulkan "install a Vulkan driver by hand" "${target[@]}" mesa-vulkan-drivers libvulkan1
echo "setup-vulkan: installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
