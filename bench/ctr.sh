#!/usr/bin/env bash
# containerd-API benchmark: `ctr images pull --plain-http` of the bench image through hawserd's containerd API and
# through a private containerd, alternating; `ctr images ls` / `ctr content ls` latency; hawserd's idle RSS.
# Then the tasks phases: `ctr run --rm` of a busybox image timed on both, alternating; 100 idle containers
# (`ctr run -d`) on each and what they cost beside themselves (shims, conmons, daemon growth); idle RSS.
# Installs what only the benchmark needs, sets the project up, then runs bench/ctr.py.
#   bash bench/ctr.sh [--runs N] [--calls N] [--idle S] [--log-level debug] [--skip-hawserd] [--skip-containerd]
#                     [--skip-pull | --skip-tasks] [--ctr-runs N] [--warmup N] [--containers N]
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd (with ctr), pigz (building the image), mkfs.ext4/losetup for the scratch filesystems.
PACKAGES=(containerd pigz e2fsprogs mount)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "ctr.sh: installing ${missing[*]}"
    apt-get update -qq
    # The benchmark never uses the packaged containerd service: it runs a private instance of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # docker-registry, runc, conmon, busybox-static, the venv with hawser and hawserd, the stubs

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/ctr.py "$@"
