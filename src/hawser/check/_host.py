"""SystemHost: the real host behind ``Host`` (/proc, mount(2), runc, cgroupfs)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hawser.check._types import MountPoint, Process
from hawser.host import CgroupLayout, proc_stat

if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.store import Store



def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class SystemHost:
    """The host the check runs on. ``runc``: the runtime binary (empty: from PATH)."""

    def __init__(self, *, runc: str = "") -> None:
        self._runc = runc or shutil.which("runc") or "/usr/sbin/runc"

    def mounts(self) -> list[MountPoint]:
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ")
                try:
                    dash = fields.index("-", 6)
                except ValueError:
                    continue
                if len(fields) > dash + 2:
                    found.append(MountPoint(path=_unescape(fields[4]), fstype=fields[dash + 1],
                                            source=_unescape(fields[dash + 2])))
        return found

    def unmount(self, path: str) -> None:
        from hawser.host import unmount_all

        unmount_all(path, detach=True)

    def processes(self, name: str) -> list[Process]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            stat = proc_stat(pid)
            if stat is None or stat.comm != name or not stat.alive:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = tuple(os.fsdecode(a) for a in f.read().split(b"\0") if a)
            except OSError:
                continue
            found.append(Process(pid=pid, start=stat.start_time, argv=argv))
        return found

    def alive(self, process: Process) -> bool:
        stat = proc_stat(process.pid)
        return stat is not None and stat.alive and stat.start_time == process.start

    def kill(self, process: Process) -> None:
        # pidfd: the signal cannot reach a process that took the pid after the check below.
        try:
            fd = os.pidfd_open(process.pid)
        except ProcessLookupError:
            return
        try:
            if self.alive(process):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)

    def wait_exit(self, process: Process, timeout: float) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while self.alive(process):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def lease_owner_alive(self, labels: Mapping[str, str]) -> bool:
        from hawser.store import lease_owner_alive

        return lease_owner_alive(labels)

    def namespace_kind(self, path: str) -> str | None:
        from hawser.host import namespace_kind

        return namespace_kind(path)

    def remove_pin_dir(self, path: str) -> None:
        from hawser.host import remove_pin_dir

        remove_pin_dir(path)

    def pid_namespace_alive(self, holder: int, init: int, marker: str) -> bool:
        from hawser.host import pid_namespace_alive

        return pid_namespace_alive(holder, init, marker)

    def runc_status(self, runc_root: str, container_id: str) -> str | None:
        from hawser.runtime import Runc

        state = Runc(runc_root, self._runc).state(container_id)
        return None if state is None else state.status

    def runc_delete(self, runc_root: str, container_id: str) -> None:
        from hawser.runtime import Runc

        Runc(runc_root, self._runc).delete(container_id, force=True)

    def remove_container(self, store: Store, record: Container) -> None:
        from hawser.images import ImageService
        from hawser.runtime import ContainerManager

        # ContainerManager works in its store's namespace: a view of the same store in the record's.
        view = store.in_namespace(record.namespace)
        manager = ContainerManager.of(view, ImageService(view))
        from hawser.pods import ContainerNetworks

        manager.networking = ContainerNetworks.of(view.config)  # a CLI container's network goes with it
        manager.remove(record.id, force=True)

    def cgroup_layout(self) -> CgroupLayout:
        return CgroupLayout.detect()
