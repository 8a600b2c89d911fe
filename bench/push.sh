#!/usr/bin/env bash
# Push benchmark: `hawser push` of the bench image to an empty local registry, against
# `skopeo copy oci:LAYOUT docker://...` of the same image and `podman push`, in the same run.
# Installs what only the benchmark needs, sets the project up, then runs bench/push.py.
#   bash bench/push.sh [--runs N] [--skip-hawser] [--skip-skopeo] [--skip-podman] [--chunk-size SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(skopeo podman pigz e2fsprogs mount)   # pigz builds the image; mkfs.ext4, losetup for the scratch fs
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "push.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup.sh   # docker-registry, the venv with hawser

# Safety net: nothing started from here may reach past loopback.
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY no_proxy=$NO_PROXY
exec .venv/bin/python bench/push.py "$@"
