"""Fault injection for tests: hawser's own failpoints (``HAWSER_FAILPOINTS``)
and wrappers of runc and the CNI plugins that fail on demand.

    env = failpoint_env("create.after-mount=kill", log)     # for a hawser process
    faults = Faults(tmp_path / "faults")                     # for the wrappers
    faults.fail("runc.delete", times=1)                      # the next runc delete fails
    config: runtime.runc = str(RUNC); hawserd --cni-bin-dir cni_bin_dir(path, ["portmap"])

The wrappers (``runc`` and ``cni-plugin`` here, shell scripts) read their
control files from ``$HAWSER_FAULTS_DIR``; see their headers.  Without the
variable, or without a control file, they exec the real program.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNC = HERE / "runc"
CNI_PLUGIN = HERE / "cni-plugin"
REAL_CNI_DIR = Path("/usr/lib/cni")


def failpoint_env(points: str, log: Path | str) -> dict[str, str]:
    """The environment that arms ``points`` (``HAWSER_FAILPOINTS`` syntax) in a
    hawser process and logs each firing to ``log``.  Never put it in the test
    process's own environment: the library code a test calls would fire too."""
    return {"HAWSER_FAILPOINTS": points, "HAWSER_FAILPOINTS_LOG": str(log)}


def fired(log: Path | str) -> list[tuple[str, str]]:
    """(point, action) of every firing logged to ``log``, in order."""
    try:
        text = Path(log).read_text()
    except FileNotFoundError:
        return []
    return [(line.split()[0], line.split()[1]) for line in text.splitlines() if line.strip()]


class Faults:
    """The control directory of the failing runc and CNI plugin wrappers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {"HAWSER_FAULTS_DIR": str(self.directory)}

    def fail(self, target: str, *, times: int | None = None) -> None:
        """Make ``target`` ("runc.create", "cni.portmap.ADD"...) fail: the next
        ``times`` calls, or every call (None)."""
        (self.directory / target).write_text("always" if times is None else str(times))

    def heal(self, target: str | None = None) -> None:
        """Stop failing ``target`` (or everything)."""
        for path in self.directory.glob(target or "*.*"):
            if path.name != "calls":
                path.unlink()

    def calls(self) -> list[str]:
        """Every wrapper call so far: "runc <cmd> <last arg>[ FAILED]", "cni <plugin> <CMD> <id>[ FAILED]"."""
        try:
            return (self.directory / "calls").read_text().splitlines()
        except FileNotFoundError:
            return []


def cni_bin_dir(path: Path, wrapped: Iterable[str]) -> Path:
    """A CNI bin dir: every real plugin (symlinked), the failing wrapper
    standing in for each of ``wrapped``."""
    path.mkdir(parents=True, exist_ok=True)
    wrapped = set(wrapped)
    for plugin in os.listdir(REAL_CNI_DIR):
        target = CNI_PLUGIN if plugin in wrapped else REAL_CNI_DIR / plugin
        os.symlink(target, path / plugin)
    return path


__all__ = ["CNI_PLUGIN", "RUNC", "Faults", "cni_bin_dir", "failpoint_env", "fired"]
