"""The infra process of a pod that shares one pid namespace.

A pid namespace cannot be pinned like net/ipc/uts: it lives only while its
pid 1 does, and unshare(CLONE_NEWPID) moves only the caller's children.  So a
pod asking for a shared pid namespace gets a tiny init, catatonit in pause
mode, started as pid 1 of a new namespace by util-linux ``unshare --pid
--fork --kill-child``; the pod's containers join ``/proc/<init>/ns/pid``.
The holder runs in its own session, so hawserd can exit or crash and the pod
keeps its namespace (the holder is then re-parented to init, which reaps it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

from hawser.errors import DeadlineExceeded, FailedPrecondition

START_TIMEOUT = 5.0


def start_pid_namespace(marker: str, *, catatonit: str | None = None, userns: str | None = None) -> tuple[int, int]:
    """Start an init holding a new pid namespace; ``(holder pid, init pid)``.

    ``userns``: a pinned user namespace the pid namespace is to belong to
    (a pod with a user namespace: its containers' root can mount /proc only
    in a pid namespace their user namespace owns).  The holder enters it with
    util-linux ``nsenter`` as the namespace's root, then execs ``unshare``.

    ``marker`` (the pod id) goes on the holder's command line so that
    ``stop_pid_namespace`` never signals a recycled pid.  FailedPrecondition if
    catatonit or unshare is missing, DeadlineExceeded if the init did not appear.
    """
    init = catatonit or shutil.which("catatonit") or "/usr/bin/catatonit"
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    for program in (init, unshare):
        if not os.access(program, os.X_OK):
            raise FailedPrecondition(f"{program} is not installed", hint="run scripts/setup.sh (catatonit, util-linux)")
    # catatonit's -P: pause forever, reaping orphans; the trailing marker is ignored by it.
    argv = [unshare, "--pid", "--fork", "--kill-child", init, "-P", "--", marker]
    if userns is not None:
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        argv = [nsenter, f"--user={userns}", "--setuid=0", "--setgid=0", "--", *argv]
    proc = subprocess.Popen(argv,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    # Reap the holder whenever it ends while this process lives.
    threading.Thread(target=proc.wait, name="hawser-infra-reaper", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        child = _first_child(proc.pid)
        if child and _comm(child) == "catatonit":
            return proc.pid, child
        if proc.poll() is not None:
            raise FailedPrecondition(f"the pod's pid namespace holder exited at once (status {proc.returncode})")
        time.sleep(0.002)
    proc.kill()
    raise DeadlineExceeded("the pod's pid namespace init did not start in time")


def pid_namespace_alive(holder: int, init: int, marker: str) -> bool:
    """Whether the init started for ``marker`` still holds its namespace."""
    return _is_holder(holder, marker) and _first_child(holder) == init


def stop_pid_namespace(holder: int, marker: str) -> None:
    """Kill the holder (its --kill-child takes the init and the namespace with
    it). Idempotent: a dead or recycled pid is left alone."""
    if _is_holder(holder, marker):
        try:
            os.kill(holder, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_holder(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"unshare") and marker.encode() in argv


def _first_child(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            children = f.read().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""
