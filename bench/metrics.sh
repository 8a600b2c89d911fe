#!/usr/bin/env bash
# Metrics benchmark: hawserd's CPU per /metrics scrape with 100 running containers (10 pods x 10, through the CRI)
# against reading the same cgroup files natively, and a CRI call's latency with the metrics endpoint on and off.
# Sets the project up, then runs bench/metrics.py.
#   bash bench/metrics.sh [--pods N] [--containers N] [--scrapes N] [--rounds N] [--calls N] [--host-network]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh   # runc, conmon, the CNI plugins, docker-registry, busybox-static, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/metrics.py "$@"
