#!/usr/bin/env bash
# Archive benchmark: hawser save/load against podman save/load of the bench image, same run, ratios printed.
# Installs podman if missing, sets the project up, then runs bench/archive.py.
#   bash bench/archive.sh [--runs N] [--scratch loop|dir] [--timeout SECONDS] [--hawser PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(podman pigz)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "archive.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # docker-registry, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/archive.py "$@"
