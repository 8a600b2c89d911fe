#!/usr/bin/env bash
# CRI benchmark: pod and container lifecycle through CRI, hawserd vs containerd's CRI plugin (same CNI conflist,
# runc, cgroupfs), sequential and 10 in parallel, and each daemon's memory idle and with 100 pods running.
# Installs what only the benchmark needs, sets the project up, then runs bench/cri.py.
#   bash bench/cri.sh [--pods N] [--warmup N] [--parallel N] [--rounds N] [--running N] [--skip-hawser] [--skip-containerd]
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd (with ctr and containerd-shim-runc-v2), the CNI plugins, catatonit (the pause binary of containerd's
# sandbox image), iptables (the plugins' NAT rules), iproute2, mkfs.ext4/losetup for the scratch filesystems.
PACKAGES=(containerd containernetworking-plugins catatonit iptables iproute2 e2fsprogs mount)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "cri.sh: installing ${missing[*]}"
    apt-get update -qq
    # The benchmark never uses the packaged containerd service: it runs a private instance of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # runc, conmon, docker-registry, busybox-static, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/cri.py "$@"
