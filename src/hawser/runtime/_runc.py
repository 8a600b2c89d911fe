"""runc's command line, with hawser's error kinds.

runc keeps its own state under ``--root`` (a tmpfs under hawser's state dir);
hawser asks it rather than caching what it says.  Any OCI runtime with runc's
command line (crun) is driven the same way: a ``RuntimeHandler`` is one of the
configured ones (``[runtimes.NAME]``), its binary, root and global flags.
"""

from __future__ import annotations

import functools
import json
import os

from hawser._dataclass import dataclass, field
from hawser._logging import get_logger
from hawser.config import find_runtime_binary, runtime_binary, runtime_root
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound
from hawser.host import proc_stat
from hawser.runtime._command import CommandFailed, CommandResult, RunningCommand, run_command, start_command

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from hawser.config import Config

RUNC_TIMEOUT = 30.0
FEATURES_TIMEOUT = 10.0
# mount_setattr(2), which a recursive read-only mount (MOUNT_ATTR_RDONLY with AT_RECURSIVE) needs.
MOUNT_SETATTR_KERNEL = (5, 12)


@dataclass(frozen=True, slots=True)
class RuntimeFeatures:
    """What a runtime handler can do on this host (the CRI's RuntimeHandlerFeatures)."""

    # The runtime knows the "rro" mount option and the kernel has mount_setattr.
    recursive_read_only_mounts: bool = False
    # Pods in user namespaces: the runtime joins a user namespace and the
    # kernel makes the idmapped mounts hawser gives their containers.
    user_namespaces: bool = False


def _kernel_at_least(release: str, wanted: tuple[int, int]) -> bool:
    """Whether a kernel release ("6.18.44-fc-v1300") is ``wanted`` (major, minor) or newer."""
    numbers = []
    for part in release.split("-", 1)[0].split(".")[:2]:
        if not part.isdigit():
            return False
        numbers.append(int(part))
    return len(numbers) == 2 and (numbers[0], numbers[1]) >= wanted


def features_of(output: bytes, *, kernel_release: str, idmapped_mounts: bool = False) -> RuntimeFeatures:
    """The features a runtime's ``features`` command reports (runc >= 1.1:
    JSON with ``mountOptions`` and ``linux.namespaces``), on a kernel of
    ``kernel_release`` that makes idmapped mounts or not.  What cannot be
    read is unsupported."""
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    options = data.get("mountOptions") or []
    rro = "rro" in options and _kernel_at_least(kernel_release, MOUNT_SETATTR_KERNEL)
    linux = data.get("linux")
    namespaces = (linux.get("namespaces") or []) if isinstance(linux, dict) else []
    return RuntimeFeatures(recursive_read_only_mounts=rro, user_namespaces="user" in namespaces and idmapped_mounts)


@dataclass(frozen=True, slots=True)
class RuncState:
    id: str
    pid: int
    status: str  # creating | created | running | paused | stopped
    bundle: str


log = get_logger(__name__)

@functools.cache
def _idmapped_mounts() -> bool:
    """Whether this kernel makes idmapped mounts for a user namespace
    (probed once per process; why not is logged)."""
    from hawser.host import idmapped_mounts_supported

    why_not = idmapped_mounts_supported()
    if why_not:
        log.info("pods cannot have user namespaces here", extra={"reason": why_not})
    return not why_not


def _gone(exc: CommandFailed) -> bool:
    # runc: "container x does not exist"; crun: "error opening file `<root>/x/status`: No such file or directory".
    return ("does not exist" in exc.stderr or "not exist" in exc.stderr
            or ("/status`" in exc.stderr and "No such file or directory" in exc.stderr))


# States kept by Runc._read_state: far more containers than a node runs.
_STATES_KEPT = 4096


class _Unsure(Exception):
    """runc's state directory is not what the fast read expects: ask runc."""


def _state_fields(raw: bytes) -> tuple[int, int, dict[str, Any], str]:
    """(init pid, its start time, cgroup paths, bundle) of runc's state.json.

    The file holds the whole container config (30 kB); ``ps`` reads one per
    container, so the four fields are picked out without parsing the rest:
    a JSON string cannot hold an unescaped quote, so ``"init_process_pid":``
    matches the key only.  Anything unexpected: the whole file is parsed."""
    import re

    pid = re.search(rb'"init_process_pid":(\d+)', raw)
    start = re.search(rb'"init_process_start":(\d+)', raw)
    cgroups = re.search(rb'"cgroup_paths":(\{[^{}]*\}|null)', raw)
    labels = re.search(rb'"labels":(\[(?:[^\]"]|"(?:[^"\\]|\\.)*")*\]|null)', raw)
    if pid and start and cgroups and labels:
        paths = json.loads(cgroups.group(1)) or {}
        label = next((item for item in json.loads(labels.group(1)) or () if isinstance(item, str)
                      and item.startswith("bundle=")), "bundle=")
        if isinstance(paths, dict):
            return int(pid.group(1)), int(start.group(1)), paths, label.split("=", 1)[1]
    data = json.loads(raw)
    bundle_label = next((label for label in (data.get("config") or {}).get("labels") or ()
                         if isinstance(label, str) and label.startswith("bundle=")), "bundle=")
    return (int(data["init_process_pid"]), int(data["init_process_start"]), dict(data.get("cgroup_paths") or {}),
            bundle_label.split("=", 1)[1])


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
    """One OCI runtime with runc's command line, its state under ``root``;
    ``options``: global flags put before every command (after ``--root``)."""

    def __init__(self, root: str, binary: str | None = None, *, options: Sequence[str] = ()) -> None:
        self.root = root
        if binary and os.path.isabs(binary):
            self.binary = binary
        else:  # a name: found on PATH (a missing one fails when run, NotFound)
            self.binary = find_runtime_binary(binary or "runc") or binary or "/usr/sbin/runc"
        self.options = tuple(options)
        self._features: RuntimeFeatures | None = None
        # What _read_state took from each state.json, by the file's identity:
        # runc replaces the file (a rename) whenever the state changes, and a
        # state.json carries the whole spec (tens of KB to parse per status).
        self._states: dict[str, tuple[tuple[int, int, int], tuple[int, int, dict[str, str], str]]] = {}

    def argv(self, *args: str) -> list[str]:
        """A command line of this runtime: its binary, root and global flags, then ``args``."""
        return [self.binary, "--root", self.root, *self.options, *args]

    def _run(self, *args: str, timeout: float = RUNC_TIMEOUT, check: bool = True) -> CommandResult:
        return run_command(self.argv(*args), timeout=timeout, check=check)

    def features(self) -> RuntimeFeatures:
        """What this runtime can do on this kernel, from its ``features``
        command (runc >= 1.1), asked once.  A runtime without one (crun 1.8)
        or that fails supports nothing optional."""
        if self._features is None:
            try:
                output = self._run("features", timeout=FEATURES_TIMEOUT).stdout
            except HawserError:
                output = b""
            self._features = features_of(output, kernel_release=os.uname().release,
                                         idmapped_mounts=_idmapped_mounts())
        return self._features

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
                st = os.fstat(f.fileno())
                identity = (st.st_ino, st.st_mtime_ns, st.st_size)
                cached = self._states.get(id_)
                if cached is not None and cached[0] == identity:
                    pid, start, cgroups, bundle = cached[1]
                else:
                    pid, start, cgroups, bundle = _state_fields(f.read())
                    if len(self._states) >= _STATES_KEPT:
                        self._states.clear()
                    self._states[id_] = (identity, (pid, start, cgroups, bundle))
        except FileNotFoundError:
            self._states.pop(id_, None)
            if os.path.isdir(directory):
                raise _Unsure from None  # being created: runc knows best
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._states.pop(id_, None)
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

    def delete_stopped(self, id_: str) -> bool:
        """What ``runc delete`` does for a container whose init has exited,
        done here when nothing needs runc for it, which saves starting runc
        (~8 ms) on every removal: runc's own state (state.json: not crun's),
        the init gone (its pid with another start time, or none), its own pid
        namespace (every process went with its init), no hooks (runc runs
        poststop at delete), cgroupfs cgroups now empty and removed, no Intel
        RDT group.  True when done; False, with nothing runc still needs
        touched, when runc must do it (``delete``)."""
        directory = os.path.join(self.root, id_)
        try:
            with open(os.path.join(directory, "state.json"), "rb") as f:
                data = json.loads(f.read())
            config = data["config"]
            pid, start = int(data["init_process_pid"]), int(data["init_process_start"])
            cgroups = [str(p) for p in (data.get("cgroup_paths") or {}).values() if p]
            own_pids = any(n.get("type") == "NEWPID" and not n.get("path") for n in config.get("namespaces") or ())
            # libcontainer's names: "Hooks" (a kind each, null when none), "Systemd" (the cgroup driver).
            hooks = config.get("Hooks") or config.get("hooks") or {}
            cgroup_config = config.get("cgroups") or {}
            plain = (own_pids and not any(hooks.values()) and not cgroup_config.get("Systemd")
                     and not cgroup_config.get("systemd") and not data.get("intel_rdt_path")
                     and not data.get("rootless"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
        if not plain or _alive(pid, start) or os.path.exists(os.path.join(directory, "exec.fifo")):
            return False
        for path in cgroups:
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    if f.read().strip():
                        return False  # a process left (exiting still): runc kills and waits
            except FileNotFoundError:
                continue
            except OSError:
                return False
        for path in sorted(set(cgroups), key=len, reverse=True):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                continue
            except OSError:
                return False  # a child cgroup, say: runc's delete finishes (it skips what is gone)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
        return True

    def delete(self, id_: str, *, force: bool = False) -> None:
        """Delete runc's record (and its cgroup). Idempotent."""
        self.finish_delete(self.start_delete(id_, force=force))

    def start_delete(self, id_: str, *, force: bool = False) -> RunningCommand:
        """delete, started in the background; finish_delete() must follow."""
        return start_command(self.argv("delete", *(["--force"] if force else []), id_))

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
            run_command(self.argv("update", "--resources", "-", id_), timeout=RUNC_TIMEOUT,
                        input=json.dumps(resources).encode())
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
        argv = self.argv("exec", "--process", process_file)
        if tty:
            argv.append("--tty")
        if detach:
            argv.append("--detach")
        if pid_file:
            argv += ["--pid-file", pid_file]
        return [*argv, id_]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeHandler:
    """A configured runtime handler (``[runtimes.NAME]``): the runtime its
    containers run with, and which of their annotations reach the OCI spec."""

    name: str
    runc: Runc
    # Annotation key prefixes; a trailing "*" is dropped ("*" allows all).
    allowed_annotations: tuple[str, ...] = field(default=("*",))

    def annotations(self, annotations: Mapping[str, str]) -> dict[str, str]:
        """The annotations this handler passes into the OCI spec (CRI-O's allowed_annotations)."""
        prefixes = tuple(p.removesuffix("*") for p in self.allowed_annotations)
        return {k: v for k, v in annotations.items() if k.startswith(prefixes)}


def runtime_handlers(config: Config) -> dict[str, RuntimeHandler]:
    """The runtime handlers ``config`` names (``[runtimes.NAME]``), by name."""
    return {name: RuntimeHandler(name=name, runc=Runc(runtime_root(config, name), runtime_binary(config, name),
                                                      options=table.options),
                                 allowed_annotations=tuple(table.allowed_annotations))
            for name, table in config.runtimes.items()}
