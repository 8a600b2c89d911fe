#!/usr/bin/env bash
# Pull benchmark: hawser vs containerd vs the native floor (curl | pigz -d | tar -x).
# Installs what only the benchmark needs, sets the project up, then runs bench/pull.py.
#   bash bench/pull.sh [--runs N] [--skip-hawser] [--skip-containerd] [--skip-floor] [--rebuild]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(containerd pigz curl tar)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "pull.sh: installing ${missing[*]}"
    apt-get update -qq
    # The benchmark never uses the packaged containerd service: it runs a private instance of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # docker-registry, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/pull.py "$@"
