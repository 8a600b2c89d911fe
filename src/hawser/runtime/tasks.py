"""Tasks: a container's process made from a spec and a rootfs the client
gives, with the client's stdio (containerd's task model, for its Tasks API).

A hawser container made by ``create`` gets its spec from options and its
output goes to a log; a task is made from the container record's OCI spec
as the client wrote it, its rootfs mounts as the client sent them (or the
record's snapshot), and its stdin, stdout and stderr are named pipes (FIFOs)
the client made and reads.  conmon runs it as any container: conmon, not
hawserd, is its parent and writes its exit status, so hawserd can go away
and come back without the task noticing.

Without a terminal, conmon hands the FIFOs to the process itself
(``--log-path passthrough:``): nothing copies the output, so nothing is lost
whoever dies.  With one, conmon holds the terminal and a relay process of
the task's own (``_relay``, never hawserd's child) copies between conmon's
attach socket and the FIFOs.  A FIFO is opened as containerd's shim opens them: stdin for
reading without blocking (a client that never writes gives EOF), stdout and
stderr read-write (opening never blocks on a reader that is not there yet,
and the process never gets SIGPIPE when a client goes away and comes back).

An exec is prepared by ``add_exec`` (its process spec and stdio kept under
the bundle's ``exec/<id>/``) and run by ``start_exec``, under a conmon of its
own in the same way (with a terminal: conmon makes the attach socket in that
directory and runs the exec once the relay is connected); its exit status
is the file conmon writes there.

The task's state is the container's (``ContainerManager.status``); deleting
the task (``delete_task``) removes the bundle and runc's state and unmounts
the rootfs, and keeps the container record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hawser._dataclass import asdict, dataclass
from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.runtime._conmon import ConmonPaths, ConmonSession, ConmonWatch, conmon_argv
from hawser.runtime._files import read_int, remove_link_or_tree, write_json
from hawser.runtime._types import CREATED, EXITED, PAUSED, RUNNING, UNKNOWN, ContainerStatus
from hawser.snapshots import Mount, mount_all, unmount_all

if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.runtime._containers import ContainerManager

# Under the bundle: what the task was made with (its stdio), for Get and List.
TASK_FILE = "task.json"
EXEC_DIR = "exec"
# conmon's copy of a terminal's output (it needs a log; nobody reads it): truncated past this.
TERMINAL_LOG_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class TaskIO:
    """The client's FIFOs ("" for none: /dev/null), and whether the process has a terminal."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class ProcessState:
    """A task's or an exec's process as containerd's Process message has it."""

    container_id: str
    exec_id: str  # "" for the task's init process
    pid: int
    state: str  # CREATED, RUNNING, PAUSED, EXITED, UNKNOWN
    io: TaskIO
    exit_status: int = 0
    exited_at: float | None = None


NO_IO = TaskIO()


def has_task(manager: ContainerManager, record: Container) -> bool:
    """Whether ``record`` has a task (a bundle with a conmon)."""
    return os.path.exists(os.path.join(manager.bundle(record.id), "conmon.pid"))


def create_task(manager: ContainerManager, record: Container, spec: Mapping[str, Any], *,
                rootfs: Sequence[Mount] = (), io: TaskIO = NO_IO) -> int:
    """Create the task of ``record`` (not started); its pid.  AlreadyExists
    when it has one; FailedPrecondition without a rootfs (no mounts given and
    no snapshot); the runtime's error kinds when runc refuses the spec.  On
    failure nothing is left behind."""
    bundle = manager.bundle(record.id)
    with manager._locked(record.id):
        if has_task(manager, record):
            raise AlreadyExists(f"task {record.id}: already exists")
        # A bundle without conmon: a create that died half-way; start over.
        _release_bundle(manager, record.id)
        mounts = list(rootfs) or _snapshot_mounts(manager, record)
        root = os.path.join(bundle, "rootfs")
        os.makedirs(root, mode=0o700)
        os.chmod(bundle, 0o700)  # as create's: no host user walks into the rootfs
        try:
            try:
                mount_all(mounts, root)
            except OSError as exc:
                raise InvalidArgument(f"cannot mount the task's rootfs ({', '.join(m.type for m in mounts)}): "
                                      f"{exc.strerror or exc}") from None
            config = json.loads(json.dumps(spec))  # a deep copy, JSON only
            config.setdefault("root", {})["path"] = root
            if bool(config.get("process", {}).get("terminal")) != io.terminal:
                raise InvalidArgument(f"the spec {'asks for' if not io.terminal else 'has'} no terminal but the "
                                      f"task {'has' if io.terminal else 'has none'} (terminal={io.terminal})")
            write_json(os.path.join(bundle, "config.json"), config)
            write_json(os.path.join(bundle, TASK_FILE), {"io": asdict(io), "created": time.time()})
            paths = ConmonPaths(bundle=bundle, pid_file=os.path.join(bundle, "pidfile"),
                                conmon_pid_file=os.path.join(bundle, "conmon.pid"), exit_dir=manager.exits_dir,
                                log_path=os.path.join(bundle, "terminal.log") if io.terminal else os.devnull,
                                socket_dir=manager.sockets_dir)
            if not io.terminal:
                return _run_conmon(manager, record, paths, io, cwd=bundle, session=_session(record))
            pid = _run_conmon_terminal(manager, record, paths)
            _start_relay(bundle, io)
            return pid
        except BaseException:
            manager._forget_runtime(record.id)
            _release_bundle(manager, record.id)
            raise


def _snapshot_mounts(manager: ContainerManager, record: Container) -> list[Mount]:
    if not record.snapshot_key:
        raise FailedPrecondition(f"container {record.id}: no rootfs: the request has no mounts and the "
                                 "container no snapshot")
    if record.snapshotter != manager.snapshotter.name:
        raise FailedPrecondition(f"container {record.id}: snapshotter {record.snapshotter!r} is not this "
                                 f"store's ({manager.snapshotter.name!r})")
    try:
        return list(manager.snapshotter.mounts(record.snapshot_key))
    except NotFound:
        raise FailedPrecondition(f"container {record.id}: its snapshot {record.snapshot_key!r} is gone") from None


def _session(record: Container, exec_id: str = "") -> str:
    """conmon's session id, which names its attach socket's directory under the
    state dir: the container's id for the task; for an exec one unique to the
    container and the exec (two containers' execs may share an id), short
    enough for a socket path."""
    if not exec_id:
        return record.id
    return "exec-" + hashlib.sha256(f"{record.id}/{exec_id}".encode()).hexdigest()[:24]


def _run_conmon(manager: ContainerManager, record: Container, paths: ConmonPaths, io: TaskIO, *, cwd: str,
                exec_process: str | None = None, session: str) -> int:
    argv = conmon_argv(runc=manager.runc_for(record), container_id=record.id, session_id=session,
                       name=record.name, paths=paths, tty=False, stdin=False, exec_process=exec_process,
                       passthrough=True, conmon=manager.config.runtime.conmon)
    fds = _open_stdio(io)
    try:
        conmon = ConmonSession(argv, cwd=cwd, stdio=fds)
    finally:
        for fd in fds:
            os.close(fd)
    try:
        return conmon.wait_pid()
    finally:
        conmon.close()


def _run_conmon_terminal(manager: ContainerManager, record: Container, paths: ConmonPaths) -> int:
    """conmon holding the terminal, its output also in a small log in the bundle."""
    argv = conmon_argv(runc=manager.runc_for(record), container_id=record.id, session_id=record.id,
                       name=record.name, paths=paths, tty=True, stdin=True, leave_stdin_open=True,
                       log_size_max=TERMINAL_LOG_MAX, conmon=manager.config.runtime.conmon)
    assert paths.bundle is not None
    session = ConmonSession(argv, cwd=paths.bundle)
    try:
        return session.wait_pid()
    finally:
        session.close()


def _start_relay(bundle: str, io: TaskIO) -> None:
    """The relay between conmon's attach socket and the client's FIFOs (``_relay``),
    connected before this returns."""
    import sys

    from hawser.host import run_process

    relay = run_process([sys.executable, "-m", "hawser.runtime._relay", bundle, io.stdin, io.stdout], timeout=30)
    said = relay.stdout.decode(errors="replace")
    if relay.returncode != 0 or not said.startswith("+"):
        detail = said.lstrip("!") or relay.stderr.decode(errors="replace").strip() or f"status {relay.returncode}"
        raise FailedPrecondition(f"cannot relay the task's terminal: {detail}")


def _open_stdio(io: TaskIO) -> tuple[int, int, int]:
    """The client's FIFOs opened as the process will have them (see the module's doc)."""
    opened: list[int] = []
    try:
        for path, flags in ((io.stdin, os.O_RDONLY | os.O_NONBLOCK), (io.stdout, os.O_RDWR),
                            (io.stderr, os.O_RDWR)):
            if not path:
                opened.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                continue
            if not os.path.isabs(path):
                raise InvalidArgument(f"stdio path {path!r} is not absolute")
            try:
                fd = os.open(path, flags | os.O_CLOEXEC)
            except FileNotFoundError:
                raise InvalidArgument(f"stdio path {path} does not exist (the client makes its FIFOs)") from None
            opened.append(fd)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise InvalidArgument(f"stdio path {path} is not a FIFO")
            os.set_blocking(fd, True)
        return opened[0], opened[1], opened[2]
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise


def start_task(manager: ContainerManager, record: Container) -> int:
    """Start a created task; its pid.  NotFound without a task; FailedPrecondition when it is not created."""
    _require_task(manager, record)
    manager.start(record.id)
    return read_int(os.path.join(manager.bundle(record.id), "pidfile"))


def task_state(manager: ContainerManager, record: Container) -> ProcessState:
    """The task's process. NotFound without a task."""
    _require_task(manager, record)
    bundle = manager.bundle(record.id)
    status = manager.status(record)
    return ProcessState(container_id=record.id, exec_id="", pid=read_int(os.path.join(bundle, "pidfile")),
                        state=status.state, io=_read_io(os.path.join(bundle, TASK_FILE)),
                        exit_status=_exit_status(status), exited_at=status.finished_at)


def delete_task(manager: ContainerManager, record: Container) -> ProcessState:
    """Delete a task that is not running: runc's state, the bundle, the
    rootfs mount; the record stays.  What it was (its exit) is returned.
    NotFound without a task; FailedPrecondition while it runs."""
    _require_task(manager, record)
    with manager._locked(record.id):
        state = task_state(manager, record)
        if state.state in (RUNNING, PAUSED):
            raise FailedPrecondition(f"task {record.id} must be stopped before deletion: {state.state}")
        root = os.path.join(manager.bundle(record.id), "rootfs")

        def release_rootfs() -> None:
            if os.path.isdir(root):
                with contextlib.suppress(OSError):
                    unmount_all(root, detach=True)

        manager._forget_runtime(record.id, meanwhile=release_rootfs, strict=True)
        for exec_id in exec_ids(manager, record):  # those the client did not delete
            remove_link_or_tree(os.path.join(manager.sockets_dir, _session(record, exec_id)))
        _release_bundle(manager, record.id)
    return state


def _release_bundle(manager: ContainerManager, id_: str) -> None:
    bundle = manager.bundle(id_)
    root = os.path.join(bundle, "rootfs")
    if os.path.isdir(root):
        with contextlib.suppress(OSError):
            unmount_all(root, detach=True)
    shutil.rmtree(bundle, ignore_errors=True)
    remove_link_or_tree(os.path.join(manager.sockets_dir, id_))


def resize_task(manager: ContainerManager, record: Container, *, width: int, height: int) -> None:
    """Set the size of the task's terminal. FailedPrecondition when it has none."""
    _require_task(manager, record)
    bundle = manager.bundle(record.id)
    if not _read_io(os.path.join(bundle, TASK_FILE)).terminal:
        raise FailedPrecondition(f"task {record.id} has no terminal to resize")
    _write_ctl(bundle, f"1 {height} {width}\n")


def _write_ctl(directory: str, line: str) -> None:
    """A line to conmon's control FIFO (``1 ROWS COLS``: a terminal's size)."""
    try:
        ctl = os.open(os.path.join(directory, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # conmon is gone (the process has exited)
        raise FailedPrecondition(f"cannot resize the terminal: {exc.strerror}") from None
    try:
        os.write(ctl, line.encode())
    finally:
        os.close(ctl)


def _check_signal(sig: int) -> None:
    if not 0 < sig <= signal.SIGRTMAX:
        raise InvalidArgument(f"invalid signal {sig}: signals are 1 to {int(signal.SIGRTMAX)}")


def kill_task(manager: ContainerManager, record: Container, sig: int, *, all_processes: bool = False) -> None:
    """Signal the task's process (every process with ``all_processes``).
    NotFound without a task, or when it is not running (containerd's answer);
    InvalidArgument for a number that is no signal."""
    _check_signal(sig)
    _require_task(manager, record)
    state = manager.status(record).state
    if state in (EXITED, UNKNOWN):
        raise NotFound(f"process already finished: task {record.id} is {state}")
    manager.runc_for(record).kill(record.id, sig, all_processes=all_processes)


async def wait_task(manager: ContainerManager, record: Container,
                    blocking: Callable[..., Awaitable[Any]]) -> ContainerStatus:
    """Until the task has exited (also one that exited while nobody watched);
    its status.  Waits on conmon's pidfd, on the event loop: a waiting client
    holds no thread."""
    bundle = manager.bundle(record.id)
    while True:
        status: ContainerStatus = await blocking(manager.status, record)
        if status.state in (EXITED, UNKNOWN) or not os.path.isdir(bundle):
            return status
        await _conmon_gone(read_int(os.path.join(bundle, "conmon.pid")), timeout=1.0)


async def _conmon_gone(pid: int, *, timeout: float) -> None:
    """Returns when conmon ``pid`` exits, or after ``timeout`` (a poll, for safety)."""
    watch = ConmonWatch(pid)
    try:
        fd = watch._fd
        if watch.pid <= 0 or fd < 0:
            await asyncio.sleep(0.05 if watch.pid <= 0 else timeout)
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, readable)
        try:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see events.Broadcast.follow
                async with asyncio.timeout(timeout):
                    await gone
        finally:
            loop.remove_reader(fd)
    finally:
        watch.close()


def list_pids(manager: ContainerManager, record: Container) -> list[int]:
    """The pids of the task's processes (runc ps). NotFound without a task."""
    _require_task(manager, record)
    from hawser.runtime._command import CommandFailed, run_command

    try:
        result = run_command(manager.runc_for(record).argv("ps", "--format", "json", record.id), timeout=30.0)
    except CommandFailed as exc:
        raise FailedPrecondition(f"cannot list the processes of task {record.id}: {exc.stderr}") from None
    return [int(p) for p in json.loads(result.stdout or b"[]") or []]


# --- execs -----------------------------------------------------------------------------


def _exec_dir(manager: ContainerManager, record: Container, exec_id: str) -> str:
    if not exec_id or "/" in exec_id or exec_id in (".", "..") or len(exec_id) > 76:
        raise InvalidArgument(f"invalid exec id {exec_id!r}")
    return os.path.join(manager.bundle(record.id), EXEC_DIR, exec_id)


def add_exec(manager: ContainerManager, record: Container, exec_id: str, process: Mapping[str, Any],
             io: TaskIO) -> None:
    """Prepare an exec in a running task (``start_exec`` runs it).
    AlreadyExists for an id in use; FailedPrecondition when the task does not run."""
    if bool(process.get("terminal")) != io.terminal:
        raise InvalidArgument(f"the exec's process {'has' if process.get('terminal') else 'has no'} terminal "
                              f"but its stdio {'has' if io.terminal else 'has none'}")
    _require_task(manager, record)
    if manager.status(record).state != RUNNING:
        raise FailedPrecondition(f"task {record.id} is not running")
    if not process.get("args"):
        raise InvalidArgument("the exec's process has no args")
    directory = _exec_dir(manager, record, exec_id)
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise AlreadyExists(f"exec {exec_id} of task {record.id}: already exists") from None
    write_json(os.path.join(directory, "process.json"), dict(process))
    write_json(os.path.join(directory, TASK_FILE), {"io": asdict(io), "created": time.time()})


def start_exec(manager: ContainerManager, record: Container, exec_id: str) -> int:
    """Run a prepared exec; its pid.  NotFound for an unknown exec; FailedPrecondition when it ran already."""
    directory = _exec_dir(manager, record, exec_id)
    if not os.path.isdir(directory):
        raise NotFound(f"exec {exec_id} of task {record.id} not found")
    if os.path.exists(os.path.join(directory, "conmon.pid")):
        raise FailedPrecondition(f"exec {exec_id} of task {record.id} has started already")
    io = _read_io(os.path.join(directory, TASK_FILE))
    process_file = os.path.join(directory, "process.json")
    if io.terminal:
        pid = _run_exec_terminal(manager, record, directory, io, process_file, _session(record, exec_id))
    else:
        paths = ConmonPaths(bundle=None, pid_file=os.path.join(directory, "pid"),
                            conmon_pid_file=os.path.join(directory, "conmon.pid"), exit_dir=directory,
                            log_path=os.devnull, socket_dir=manager.sockets_dir)
        pid = _run_conmon(manager, record, paths, io, cwd=directory, exec_process=process_file,
                          session=_session(record, exec_id))
    with open(os.path.join(directory, "process.json"), encoding="utf-8") as f:
        manager.exec_started(record, exec_id, json.load(f).get("args", []))
    return pid


def _run_exec_terminal(manager: ContainerManager, record: Container, directory: str, io: TaskIO,
                       process_file: str, session: str) -> int:
    """An exec with a terminal: conmon makes its attach socket (and ``ctl``)
    in the exec's directory and waits; the relay connects; then it runs."""
    paths = ConmonPaths(bundle=directory, pid_file=os.path.join(directory, "pid"),
                        conmon_pid_file=os.path.join(directory, "conmon.pid"), exit_dir=directory,
                        log_path=os.path.join(directory, "terminal.log"), socket_dir=manager.sockets_dir)
    argv = conmon_argv(runc=manager.runc_for(record), container_id=record.id, session_id=session,
                       name=record.name, paths=paths, tty=True, stdin=True, exec_process=process_file,
                       log_size_max=TERMINAL_LOG_MAX, conmon=manager.config.runtime.conmon)
    conmon = ConmonSession(argv, cwd=directory, attach=True)
    try:
        conmon.wait_attach()
        _start_relay(directory, io)
        conmon.release()
        return conmon.wait_pid()
    finally:
        conmon.close()


def resize_exec(manager: ContainerManager, record: Container, exec_id: str, *, width: int, height: int) -> None:
    """Set the size of an exec's terminal. FailedPrecondition when it has none."""
    directory = _exec_dir(manager, record, exec_id)
    if not _read_io(os.path.join(directory, TASK_FILE)).terminal:
        raise FailedPrecondition(f"exec {exec_id} has no terminal to resize")
    _write_ctl(directory, f"1 {height} {width}\n")


def exec_state(manager: ContainerManager, record: Container, exec_id: str) -> ProcessState:
    """An exec's process. NotFound for an unknown exec."""
    directory = _exec_dir(manager, record, exec_id)
    if not os.path.isdir(directory):
        raise NotFound(f"exec {exec_id} of task {record.id} not found")
    io = _read_io(os.path.join(directory, TASK_FILE))
    pid = read_int(os.path.join(directory, "pid"))
    exit_file = os.path.join(directory, record.id)
    try:
        with open(exit_file, encoding="ascii") as f:
            text = f.read().strip()
        code = int(text) if text.lstrip("-").isdigit() else -1
        return ProcessState(container_id=record.id, exec_id=exec_id, pid=pid, state=EXITED, io=io,
                            exit_status=code & 0xFFFFFFFF, exited_at=os.stat(exit_file).st_mtime)
    except FileNotFoundError:
        pass
    if not os.path.exists(os.path.join(directory, "conmon.pid")):
        return ProcessState(container_id=record.id, exec_id=exec_id, pid=0, state=CREATED, io=io)
    with ConmonWatch(read_int(os.path.join(directory, "conmon.pid"))) as conmon:
        if conmon.alive():
            return ProcessState(container_id=record.id, exec_id=exec_id, pid=pid, state=RUNNING, io=io)
    return ProcessState(container_id=record.id, exec_id=exec_id, pid=pid, state=UNKNOWN, io=io)


async def wait_exec(manager: ContainerManager, record: Container, exec_id: str,
                    blocking: Callable[..., Awaitable[Any]]) -> ProcessState:
    """Until the exec has exited; its state."""
    directory = _exec_dir(manager, record, exec_id)
    while True:
        state: ProcessState = await blocking(exec_state, manager, record, exec_id)
        if state.state in (EXITED, UNKNOWN):
            return state
        if state.state == CREATED:
            await asyncio.sleep(0.1)
            continue
        await _conmon_gone(read_int(os.path.join(directory, "conmon.pid")), timeout=1.0)


def kill_exec(manager: ContainerManager, record: Container, exec_id: str, sig: int) -> None:
    """Signal a running exec. NotFound when it is unknown or not running."""
    _check_signal(sig)
    state = exec_state(manager, record, exec_id)
    if state.state != RUNNING or state.pid <= 0:
        raise NotFound(f"process already finished: exec {exec_id} is {state.state}")
    from hawser.host import kill_process

    if not kill_process(state.pid, sig):
        raise NotFound(f"process already finished: exec {exec_id}")


def delete_exec(manager: ContainerManager, record: Container, exec_id: str) -> ProcessState:
    """Forget an exec that is not running; what it was."""
    state = exec_state(manager, record, exec_id)
    if state.state == RUNNING:
        raise FailedPrecondition(f"exec {exec_id} must be stopped before deletion: running")
    if state.state == EXITED:
        manager.exec_exited(record, exec_id, state.exit_status)
    shutil.rmtree(_exec_dir(manager, record, exec_id), ignore_errors=True)
    remove_link_or_tree(os.path.join(manager.sockets_dir, _session(record, exec_id)))
    return state


def exec_ids(manager: ContainerManager, record: Container) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(manager.bundle(record.id), EXEC_DIR)))
    except FileNotFoundError:
        return []


# --- helpers ---------------------------------------------------------------------------


def _require_task(manager: ContainerManager, record: Container) -> None:
    if not os.path.isdir(manager.bundle(record.id)) or not has_task(manager, record):
        raise NotFound(f"no running task found: task {record.id} not found")


def _read_io(path: str) -> TaskIO:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f).get("io") or {}
        return TaskIO(stdin=str(data.get("stdin", "")), stdout=str(data.get("stdout", "")),
                      stderr=str(data.get("stderr", "")), terminal=bool(data.get("terminal", False)))
    except (OSError, ValueError, AttributeError):
        return TaskIO()


def _exit_status(status: ContainerStatus) -> int:
    return (status.exit_code if status.exit_code is not None else 255) & 0xFFFFFFFF if status.state == EXITED else 0


__all__ = ["ProcessState", "TaskIO", "add_exec", "create_task", "delete_exec", "delete_task", "exec_ids",
           "exec_state", "has_task", "kill_exec", "kill_task", "list_pids", "resize_exec", "resize_task", "start_exec",
           "start_task", "task_state", "wait_exec", "wait_task"]
