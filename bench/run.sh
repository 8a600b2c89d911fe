#!/usr/bin/env bash
# Run benchmark: `hawser run --rm IMAGE /bin/true` vs `ctr run --rm` (containerd) vs bare `runc run` (the floor),
# `hawser --version` latency, and the memory of idle containers outside themselves.
# Installs what only the benchmark needs, sets the project up, then runs bench/run.py.
#   bash bench/run.sh [--runs N] [--warmup N] [--idle N] [--skip-hawser] [--skip-containerd] [--skip-floor]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(containerd tar e2fsprogs mount)   # ctr comes with containerd; mkfs.ext4, losetup for the scratch fs
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "run.sh: installing ${missing[*]}"
    apt-get update -qq
    # The benchmark never uses the packaged containerd service: it runs a private instance of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # runc, conmon, docker-registry, busybox-static, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/run.py "$@"
