"""The host's mounts and cgroups, as tests check and clean them up."""

from __future__ import annotations

import contextlib
import os
import subprocess

CGROUP_ROOT = "/sys/fs/cgroup"


def unmount_under(path: str) -> None:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(path.rstrip("/") + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def mounts_under(path: str) -> list[str]:
    """Mount points below ``path``."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path.rstrip("/") + "/")]


def cgroups_under(parent: str) -> list[str]:
    """Every cgroup directly below ``parent``, in every hierarchy."""
    found = []
    for hierarchy in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hierarchy, parent.lstrip("/"))
        if os.path.isdir(top):
            found += [os.path.join(top, d) for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))]
    return found


def remove_cgroup_parent(parent: str) -> None:
    """``parent`` and whatever empty cgroups are left below it, in every hierarchy."""
    for hierarchy in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hierarchy, parent.lstrip("/"))
        children = os.listdir(top) if os.path.isdir(top) else ()
        for d in [*sorted((os.path.join(top, x) for x in children), reverse=True), top]:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def remove_store_cgroups(root: str) -> None:
    """The cgroup parent hawser gives a store's containers and pods when no
    ``runtime.cgroup_parent`` is configured (``/hawser/<store id[:12]>``), once empty."""
    try:
        with open(os.path.join(root, "store-id"), encoding="ascii") as f:
            store_id = f.read().strip()
    except OSError:
        return
    if store_id:
        remove_cgroup_parent(f"/hawser/{store_id[:12]}")
