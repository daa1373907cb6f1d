# Sourced by the setup-*.sh scripts, for what they share once a piece is missing:
#   apt_install NAME HINT [apt-get install arguments...]
# installs with apt-get (as root or with sudo), or exits 1 with HINT where there is none.
apt_install() {
  local name=$1 hint=$2
  shift 2
  if ! command -v apt-get >/dev/null; then
    echo "$name: no apt-get here; $hint" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
