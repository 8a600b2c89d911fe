"""runc's command line, with hawser's error kinds.

runc keeps its own state under ``--root`` (a tmpfs under hawser's state dir);
hawser asks it rather than caching what it says.
"""

from __future__ import annotations

import json
import os
import shutil

from hawser._dataclass import dataclass
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.host import proc_stat
from hawser.runtime._command import CommandFailed, CommandResult, RunningCommand, run_command, start_command

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

RUNC_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class RuncState:
    id: str
    pid: int
    status: str  # creating | created | running | paused | stopped
    bundle: str


def _gone(exc: CommandFailed) -> bool:
    return "does not exist" in exc.stderr or "not exist" in exc.stderr


class _Unsure(Exception):
    """runc's state directory is not what the fast read expects: ask runc."""


def _alive(pid: int, start: int) -> bool:
    """Whether ``pid`` is the process runc started (same start time), not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat.alive and stat.start_time == start


def _frozen(cgroups: dict[str, str]) -> bool:
    freezer = cgroups.get("freezer")
    try:
        if freezer:
            with open(os.path.join(freezer, "freezer.state"), encoding="ascii") as f:
                return f.read().strip() == "FROZEN"
        unified = cgroups.get("")
        if unified:
            with open(os.path.join(unified, "cgroup.freeze"), encoding="ascii") as f:
                return f.read().strip() == "1"
    except OSError:
        return False
    return False


class Runc:
    def __init__(self, root: str, binary: str | None = None) -> None:
        self.root = root
        found = binary or shutil.which("runc") or "/usr/sbin/runc"
        self.binary = found

    def _run(self, *args: str, timeout: float = RUNC_TIMEOUT, check: bool = True) -> CommandResult:
        return run_command([self.binary, "--root", self.root, *args], timeout=timeout, check=check)

    def state(self, id_: str) -> RuncState | None:
        """runc's view of a container; None when runc does not know it.

        Read from runc's state directory the way ``runc state`` decides
        (init pid alive with its recorded start time; frozen: paused; the
        exec fifo still there: created; else running), which costs
        microseconds instead of a runc process; ``runc state`` is asked when
        anything there is not as expected."""
        try:
            return self._read_state(id_)
        except _Unsure:
            pass
        try:
            out = self._run("state", id_).stdout
        except CommandFailed as exc:
            if _gone(exc):
                return None
            raise
        data: dict[str, Any] = json.loads(out)
        return RuncState(id=str(data["id"]), pid=int(data.get("pid") or 0), status=str(data["status"]),
                         bundle=str(data.get("bundle", "")))

    def _read_state(self, id_: str) -> RuncState | None:
        directory = os.path.join(self.root, id_)
        try:
            with open(os.path.join(directory, "state.json"), "rb") as f:
                data = json.loads(f.read())
            pid = int(data["init_process_pid"])
            start = int(data["init_process_start"])
            cgroups = data.get("cgroup_paths") or {}
            bundle = next((label.split("=", 1)[1] for label in (data.get("config") or {}).get("labels") or ()
                           if isinstance(label, str) and label.startswith("bundle=")), "")
        except FileNotFoundError:
            if os.path.isdir(directory):
                raise _Unsure from None  # being created: runc knows best
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise _Unsure from None
        if not _alive(pid, start):
            return RuncState(id=id_, pid=0, status="stopped", bundle=bundle)
        if _frozen(cgroups):
            return RuncState(id=id_, pid=pid, status="paused", bundle=bundle)
        created = os.path.exists(os.path.join(directory, "exec.fifo"))
        return RuncState(id=id_, pid=pid, status="created" if created else "running", bundle=bundle)

    def start(self, id_: str) -> None:
        try:
            self._run("start", id_)
        except CommandFailed as exc:
            if _gone(exc):
                raise NotFound(f"container {id_} is not created in runc") from None
            raise FailedPrecondition(f"cannot start container {id_[:12]}: {exc.stderr}") from None

    def kill(self, id_: str, sig: int, *, all_processes: bool = False) -> None:
        """Signal the container's init (or every process with ``all_processes``).
        NotFound if runc does not know it; FailedPrecondition if it is not running."""
        args = ["kill", *(["--all"] if all_processes else []), id_, str(sig)]
        try:
            self._run(*args)
        except CommandFailed as exc:
            if _gone(exc):
                raise NotFound(f"container {id_[:12]} is not known to runc") from None
            if "not running" in exc.stderr or "process already finished" in exc.stderr:
                raise FailedPrecondition(f"container {id_[:12]} is not running") from None
            if "invalid signal" in exc.stderr or "invalid argument" in exc.stderr:
                raise InvalidArgument(f"invalid signal {sig}") from None
            raise

    def delete(self, id_: str, *, force: bool = False) -> None:
        """Delete runc's record (and its cgroup). Idempotent."""
        self.finish_delete(self.start_delete(id_, force=force))

    def start_delete(self, id_: str, *, force: bool = False) -> RunningCommand:
        """delete, started in the background; finish_delete() must follow."""
        return start_command([self.binary, "--root", self.root, "delete", *(["--force"] if force else []), id_])

    def finish_delete(self, running: RunningCommand) -> None:
        try:
            running.finish(timeout=RUNC_TIMEOUT)
        except CommandFailed as exc:
            if not _gone(exc):
                raise

    def update(self, id_: str, resources: dict[str, Any]) -> None:
        """Apply OCI ``linux.resources`` (cpu, memory, pids...) to a created or
        running container's cgroup.  NotFound if runc does not know it;
        InvalidArgument when the kernel refuses a value (say, a memory limit
        below what the container uses)."""
        try:
            run_command([self.binary, "--root", self.root, "update", "--resources", "-", id_],
                        timeout=RUNC_TIMEOUT, input=json.dumps(resources).encode())
        except CommandFailed as exc:
            if _gone(exc):
                raise NotFound(f"container {id_[:12]} is not known to runc") from None
            raise InvalidArgument(f"cannot update the resources of container {id_[:12]}: {exc.stderr}") from None

    def pause(self, id_: str) -> None:
        try:
            self._run("pause", id_)
        except CommandFailed as exc:
            raise FailedPrecondition(f"cannot pause container {id_[:12]}: {exc.stderr}") from None

    def resume(self, id_: str) -> None:
        try:
            self._run("resume", id_)
        except CommandFailed as exc:
            raise FailedPrecondition(f"cannot unpause container {id_[:12]}: {exc.stderr}") from None

    def exec_argv(self, id_: str, process_file: str, *, tty: bool, detach: bool = False,
                  pid_file: str | None = None) -> list[str]:
        """The command line of an exec the caller runs itself (attached: runc
        relays the terminal or stdio to the caller's)."""
        argv = [self.binary, "--root", self.root, "exec", "--process", process_file]
        if tty:
            argv.append("--tty")
        if detach:
            argv.append("--detach")
        if pid_file:
            argv += ["--pid-file", pid_file]
        return [*argv, id_]
