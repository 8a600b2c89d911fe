#!/usr/bin/env bash
# Set up a Debian 12 machine (as root) to run and test hawser. Idempotent.
#   - Debian packages: the real components hawser drives and tests against
#   - a virtualenv in .venv with hawser installed (editable) and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    runc conmon containernetworking-plugins catatonit   # runtime, monitor, CNI, pid-namespace holder
    crun                                                # a second runtime handler the tests configure ([runtimes.crun])
    docker-registry busybox-static                      # a local registry and a userland for test images
    skopeo                                              # an outside client the push tests inspect pushed images with
    podman                                              # the archive tests' round trips (podman save/load)
    iproute2 iptables attr                              # netns/veth, portmap rules, xattr inspection
    gcc libc6-dev                                       # the static probe programs the security tests compile
    golang-github-containerd-containerd-dev             # containerd's .proto files: the containerd API stubs
    golang-github-containerd-cgroups-dev                # the cgroup metrics .proto a task's Metrics carries
    golang-github-gogo-googleapis-dev                   # google/rpc/status.proto, which those import
    containerd                                          # ctr, the client the containerd API tests drive
    prometheus                                          # promtool: the metrics tests check hawserd's exposition
    criu                                                # checkpoints (CheckpointContainer), where the kernel allows
    man-db groff-base zsh                               # hawser's man pages and completion scripts, checked by the tests
    python3 python3-venv ca-certificates
)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's python3 (3.11 on Debian 12) builds the venv, whatever else is on PATH.
PYTHON=/usr/bin/python3
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
stamp=".venv/.hawser-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "setup: installing hawser and its Python dependencies into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi

# The containerd API stubs, from Debian's copies of containerd's .proto files
# (generated, not kept in the repository; regenerated when their inputs change).
.venv/bin/python scripts/containerd_protos.py

# Byte-compile hawser now: with PYTHONDONTWRITEBYTECODE set (some CI images do)
# nothing else would, and every command would then compile on start (~40 ms).
.venv/bin/python -m compileall -q src/hawser >/dev/null

# Pods need a CNI network: the default one (bridge, host-local on 10.88.0.0/16,
# portmap) unless the node has one already. Tests use networks of their own.
.venv/bin/python -c 'import sys; from hawser.network import write_default_conflist as w
p = w("/etc/cni/net.d")
p and print("setup: wrote", p)' 

# Shell completion (bash, zsh) and man pages, generated from the CLI's parser: they
# cover whatever commands the table has now.
mkdir -p /usr/share/bash-completion/completions
.venv/bin/python -m hawser.cli._docs bash > /usr/share/bash-completion/completions/hawser.tmp &&
    mv /usr/share/bash-completion/completions/hawser.tmp /usr/share/bash-completion/completions/hawser
mkdir -p /usr/share/zsh/vendor-completions
.venv/bin/python -m hawser.cli._docs zsh > /usr/share/zsh/vendor-completions/_hawser.tmp &&
    mv /usr/share/zsh/vendor-completions/_hawser.tmp /usr/share/zsh/vendor-completions/_hawser
.venv/bin/python -m hawser.cli._docs man /usr/local/share/man/man1
if command -v mandb >/dev/null; then mandb -q 2>/dev/null || true; fi

# Restart policies across a reboot: a boot-time unit starts the always/unless-stopped containers.
if [[ -d /etc/systemd/system ]]; then
    sed "s|@HAWSER@|$PWD/.venv/bin/hawser|" contrib/hawser-restart.service > /etc/systemd/system/hawser-restart.service
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload && systemctl enable -q hawser-restart.service || true
    fi
fi
