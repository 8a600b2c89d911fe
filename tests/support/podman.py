"""podman and skopeo (Debian's) as the reference tools of the archive tests.

podman runs with a store of its own in a directory of its own (``--root``,
``--runroot``, ``--tmpdir``; the vfs driver, so it mounts nothing), no event
log, and a registries.conf of its own with no search registries (images are
named by full 127.0.0.1 references only).  As root, containers/image keeps a
blob-info cache in /var/lib/containers/cache whatever the flags say; it is
removed at the end when it was not there before.  Saving and loading run no
container, so podman's default rlimits (which need CAP_SYS_RESOURCE, withheld
here) never come into play.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PODMAN = "/usr/bin/podman"
SKOPEO = "/usr/bin/skopeo"
_SYSTEM_CACHE = "/var/lib/containers"


def tools_available() -> bool:
    """Whether podman and skopeo are installed (scripts/setup.sh installs them)."""
    return os.access(PODMAN, os.X_OK) and os.access(SKOPEO, os.X_OK)


class Podman:
    """``podman`` with a private store in a fresh directory of /tmp (podman
    refuses a runroot path over 50 characters: pytest's are longer); ``close()`` removes it."""

    def __init__(self) -> None:
        self.directory = directory = Path(tempfile.mkdtemp(prefix="hawser-podman-"))
        self._cache_existed = os.path.exists(_SYSTEM_CACHE)
        (directory / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(directory / "registries.conf")}
        self.argv = [PODMAN, "--root", str(directory / "root"), "--runroot", str(directory / "run"),
                     "--tmpdir", str(directory / "tmp"), "--storage-driver", "vfs", "--events-backend", "none",
                     "--cgroup-manager", "cgroupfs"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def skopeo(self, *args: str) -> None:
        """``skopeo ARGS`` with podman's registries.conf (its cache is the one ``close`` removes)."""
        proc = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120, env=self.env)
        if proc.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")

    def inspect(self, image: str) -> dict[str, Any]:
        out: list[dict[str, Any]] = json.loads(self("image", "inspect", image).stdout)
        return out[0]

    def close(self) -> None:
        self("rmi", "-a", "-f", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        if not self._cache_existed:
            shutil.rmtree(_SYSTEM_CACHE, ignore_errors=True)


def skopeo_inspect(transport_path: str, *, raw: bool = False, config: bool = False) -> Any:
    """``skopeo inspect [--raw] [--config] TRANSPORT:PATH``, parsed; the raw manifest's bytes with ``raw``."""
    args = [SKOPEO, "inspect", *(["--raw"] if raw else []), *(["--config"] if config else []), transport_path]
    proc = subprocess.run(args, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc.stdout if raw else json.loads(proc.stdout)
