"""conmon: the per-container monitor that outlives every hawser process.

hawser starts conmon, which double-forks away (so it is never hawser's child),
runs ``runc create`` (or ``runc exec``), holds the container's stdio, writes
its output to a log file in the CRI format and, when the process exits, its
status to ``<exit dir>/<id>``.  The handshake is a sync pipe (``_OCI_SYNCPIPE``):
conmon writes ``{"data": PID}`` once the process exists, or ``{"data": -1,
"message": ...}`` with runc's error; an exec session then writes its exit
status the same way.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

from hawser._dataclass import dataclass
from hawser.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound
from hawser.host import proc_stat
from hawser.runtime._runc import Runc

HANDSHAKE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ConmonPaths:
    """Where conmon keeps what it writes for one container (or one exec)."""

    bundle: str | None     # None for an exec: no attach socket or control fifos
    pid_file: str          # the container (exec) process's pid, written by runc
    conmon_pid_file: str
    exit_dir: str          # conmon writes <exit_dir>/<container id>
    log_path: str          # CRI log format
    socket_dir: str


def conmon_binary() -> str:
    found = shutil.which("conmon") or "/usr/bin/conmon"
    if not os.access(found, os.X_OK):
        raise NotFound("conmon is not installed", hint="run scripts/setup.sh (Debian package conmon)")
    return found


class SyncPipe:
    """The read end of conmon's sync pipe: JSON lines, one per event."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        self._buffer = b""

    def close_writer(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_writer()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def receive(self, timeout: float | None) -> tuple[int, str] | None:
        """The next message as (data, message); None at EOF (conmon went away)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], wait)
            if not ready:
                raise DeadlineExceeded(f"conmon did not answer within {timeout:g}s")
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                if not self._buffer.strip():
                    return None
                self._buffer += b"\n"
                break
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return _parse_sync(line.decode(errors="replace"))


def _parse_sync(line: str) -> tuple[int, str]:
    try:
        obj = json.loads(line)
        return int(obj.get("data", obj.get("pid", obj.get("exit_code", -1)))), str(obj.get("message", ""))
    except (ValueError, AttributeError, TypeError):
        # Older conmons do not escape every byte of runc's message: read it loosely.
        data = re.search(r'"(?:data|pid|exit_code)"\s*:\s*(-?\d+)', line)
        message = re.search(r'"message"\s*:\s*"(.*)"\s*}', line, re.S)
        return (int(data.group(1)) if data else -1), (message.group(1) if message else line)


def conmon_argv(*, runc: Runc, container_id: str, session_id: str, name: str, paths: ConmonPaths,
                tty: bool, stdin: bool, exec_process: str | None = None, timeout: int = 0,
                log_size_max: int = 0, leave_stdin_open: bool = False, passthrough: bool = False,
                conmon: str = "", exit_command: Sequence[str] = ()) -> list[str]:
    """conmon's command line for ``runc`` (its binary, root and global flags).
    ``passthrough``: the process gets conmon's own stdin, stdout and stderr
    (``ConmonSession(stdio=...)``) instead of pipes to a log; no terminal.
    ``conmon``: the configured binary ("": the one on PATH).
    ``exit_command``: a program (and its arguments) conmon runs once the
    container has exited and its exit file is written; conmon waits for it."""
    log = "passthrough:" if passthrough else f"k8s-file:{paths.log_path}"
    argv = [conmon or conmon_binary(), "--api-version", "1", "--cid", container_id, "--cuuid", session_id,
            "--name", name, "--runtime", runc.binary, "--runtime-arg", f"--root={runc.root}",
            *(arg for flag in runc.options for arg in ("--runtime-arg", flag)),
            "--container-pidfile", paths.pid_file, "--conmon-pidfile", paths.conmon_pid_file,
            "--exit-dir", paths.exit_dir, "--log-path", log,
            "--socket-dir-path", paths.socket_dir, "--log-level", "error"]
    if paths.bundle is not None:
        argv += ["--bundle", paths.bundle]
    if exec_process is not None:
        argv += ["--exec", "--exec-process-spec", exec_process]
        if tty:  # the terminal is reached through the attach socket, made before the exec runs
            argv.append("--exec-attach")
    if tty:
        argv.append("--terminal")
    if stdin:
        # Without --leave-stdin-open: an attached client closing its input closes the container's.
        argv.append("--stdin")
        if leave_stdin_open:
            argv.append("--leave-stdin-open")
    if timeout > 0:
        argv += ["--timeout", str(timeout)]
    if log_size_max > 0:
        argv += ["--log-size-max", str(log_size_max)]
    if exit_command:
        argv += ["--exit-command", exit_command[0]]
        argv += [arg for value in exit_command[1:] for arg in ("--exit-command-arg", value)]
    return argv


class ConmonSession:
    """One conmon started for a container create or an exec."""

    def __init__(self, argv: list[str], *, cwd: str, stdio: tuple[int, int, int] | None = None,
                 attach: bool = False) -> None:
        """``stdio``: conmon's stdin, stdout and stderr, which a passthrough
        process inherits (then conmon's own errors go to that stderr too).
        ``attach`` (an exec run with ``--exec-attach``): conmon makes the
        attach socket, says so (``wait_attach``) and runs the exec only once
        told to (``release``), so that a client connected first misses no output."""
        self.pipe = SyncPipe()
        env = {k: v for k, v in os.environ.items() if not k.startswith("_OCI_")}
        env["_OCI_SYNCPIPE"] = str(self.pipe.write_fd)
        passed = [self.pipe.write_fd]
        self._start_w = self._attach = -1
        start_r = attach_w = -1
        if attach:
            start_r, self._start_w = os.pipe2(os.O_CLOEXEC)
            self._attach, attach_w = os.pipe2(os.O_CLOEXEC)
            env["_OCI_STARTPIPE"], env["_OCI_ATTACHPIPE"] = str(start_r), str(attach_w)
            passed += [start_r, attach_w]
            # conmon reads the start pipe once before it forks away (its parent waits for that).
            os.write(self._start_w, b"0")
        stdin, stdout, stderr = stdio if stdio is not None else (subprocess.DEVNULL, subprocess.DEVNULL,
                                                                  subprocess.PIPE)
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, pass_fds=tuple(passed),
                                    stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)
        except OSError as exc:
            self.pipe.close()
            self._close_attach_pipes()
            raise FailedPrecondition(f"cannot start conmon: {exc.strerror}") from None
        finally:
            for fd in (start_r, attach_w):
                if fd >= 0:
                    os.close(fd)
        self.pipe.close_writer()
        # conmon forks its monitor and exits at once: reap it now, so it is never a zombie of ours.
        try:
            _, err = proc.communicate(timeout=HANDSHAKE_TIMEOUT)
            err = err or b"see the process's stderr"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.pipe.close()
            raise DeadlineExceeded("conmon did not start within the timeout") from None
        if proc.returncode != 0:
            self.pipe.close()
            raise FailedPrecondition(f"conmon failed: {err.decode(errors='replace').strip()}")

    def wait_attach(self, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Until conmon's attach socket is there (``attach`` sessions)."""
        ready, _, _ = select.select([self._attach], [], [], timeout)
        if not ready or not os.read(self._attach, 4096):
            raise FailedPrecondition("conmon did not make the exec's attach socket")

    def release(self) -> None:
        """Let conmon run the exec (``attach`` sessions)."""
        os.write(self._start_w, b"0")

    def _close_attach_pipes(self) -> None:
        for fd in (self._start_w, self._attach):
            if fd >= 0:
                os.close(fd)
        self._start_w = self._attach = -1

    def wait_pid(self, timeout: float = HANDSHAKE_TIMEOUT) -> int:
        """The new process's pid, or the runtime's error."""
        got = self.pipe.receive(timeout)
        if got is None:
            raise FailedPrecondition("conmon exited before the container was created (see its log in syslog)")
        pid, message = got
        if pid <= 0:
            raise runtime_error(message)
        return pid

    def wait_exit(self, timeout: float | None) -> tuple[int, str]:
        """For an exec: its exit status (and conmon's message, e.g. a timeout)."""
        got = self.pipe.receive(timeout)
        if got is None:
            raise FailedPrecondition("conmon exited without reporting the exec's status")
        return got

    def close(self) -> None:
        self.pipe.close()
        self._close_attach_pipes()


def is_conmon(pid: int) -> bool:
    """``pid`` is a live (not zombie) conmon."""
    stat = proc_stat(pid)
    return stat is not None and stat.alive and stat.comm == "conmon"


class ConmonWatch:
    """A container's conmon, watched for its exit.

    Through a pidfd (Linux 5.3+) that becomes readable the moment conmon exits,
    so a wait ends then and not at the next poll: a `run --rm` of a short
    command learns of the exit at once. Opening the pidfd before checking the
    process's name makes the check stick (the pid cannot be reused under it).
    Without pidfds: the name is polled."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid or 0
        self._fd = -1
        if self.pid <= 0:
            return
        try:
            self._fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self.pid = 0
            return
        except OSError:  # no pidfds on this kernel: poll
            pass
        if not is_conmon(self.pid):
            self.close()
            self.pid = 0

    def alive(self) -> bool:
        return self.pid > 0 and not self.wait(0)

    def wait(self, timeout: float) -> bool:
        """True once conmon is gone; waits at most ``timeout`` seconds for that."""
        if self.pid <= 0:
            return True
        if self._fd >= 0:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            return bool(poller.poll(max(0, int(timeout * 1000))))
        if timeout > 0 and is_conmon(self.pid):
            time.sleep(timeout)
        return not is_conmon(self.pid)

    def wait_or_kill(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for conmon to exit, then kill it (and
        wait for that: a SIGKILL leaves it no say)."""
        if self.wait(grace):
            return
        try:
            if self._fd >= 0:
                signal.pidfd_send_signal(self._fd, signal.SIGKILL)
            elif is_conmon(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.wait(HANDSHAKE_TIMEOUT)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ConmonWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def runtime_error(message: str) -> Exception:
    """runc's create/exec error as hawser's kind, in one line."""
    text = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    plain = re.sub(r'^.*?msg="', "", text).rstrip('"').replace('\\"', '"')
    lowered = plain.lower()
    if "executable file not found" in lowered or ("no such file or directory" in lowered and "exec" in lowered):
        return InvalidArgument(f"the container's command cannot run: {plain}")
    if "permission denied" in lowered:
        return FailedPrecondition(f"the container could not start: {plain}")
    return FailedPrecondition(f"runc: {plain}")
