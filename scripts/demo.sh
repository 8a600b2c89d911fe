#!/usr/bin/env bash
# Set up, then the main job end to end: start a local registry, build and push a
# small busybox image to it, pull it with hawser, run a container from it and show its output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
exec .venv/bin/python scripts/demo.py "$@"
