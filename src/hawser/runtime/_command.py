"""The one way hawser runs a helper program (runc, conmon's runtime calls).

Every call has a timeout; stderr goes into the raised error; a timeout or an
interrupt sends SIGTERM, then SIGKILL, and the child is always reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from hawser._dataclass import dataclass
from hawser.errors import DeadlineExceeded, FailedPrecondition, HawserError, NotFound

TERM_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class CommandFailed(HawserError):
    """A helper program exited non-zero; ``stderr`` holds what it said."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{os.path.basename(argv[0])} {argv[1] if len(argv) > 1 else ''} failed "
                         f"(exit status {returncode}): {stderr or 'no message'}")


def run_command(argv: Sequence[str], *, timeout: float, input: bytes | None = None,
                env: Mapping[str, str] | None = None, check: bool = True,
                pass_fds: Sequence[int] = ()) -> CommandResult:
    """Run ``argv`` to completion. CommandFailed on a non-zero exit (with
    ``check``), DeadlineExceeded after ``timeout`` seconds (the child is
    killed and reaped), NotFound if the program is missing."""
    return start_command(argv, input=input is not None, env=env, pass_fds=pass_fds).finish(
        timeout=timeout, input=input, check=check)


def start_command(argv: Sequence[str], *, input: bool = False, env: Mapping[str, str] | None = None,
                  pass_fds: Sequence[int] = ()) -> RunningCommand:
    """Start ``argv`` and return at once, so the caller can work while it runs;
    ``finish()`` must follow (it reaps). NotFound if the program is missing."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=None if env is None else dict(env), pass_fds=tuple(pass_fds),
                                start_new_session=True)
    except FileNotFoundError:
        raise NotFound(f"{argv[0]} is not installed", hint="run scripts/setup.sh") from None
    except PermissionError as exc:
        raise FailedPrecondition(f"cannot run {argv[0]}: {exc.strerror}") from None
    return RunningCommand(argv, proc)


class RunningCommand:
    """A helper program started by start_command."""

    def __init__(self, argv: Sequence[str], proc: subprocess.Popen[bytes]) -> None:
        self.argv = tuple(argv)
        self._proc = proc

    def finish(self, *, timeout: float, input: bytes | None = None, check: bool = True) -> CommandResult:
        """Wait for the exit (feeding ``input``); the errors of run_command."""
        proc = self._proc
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _terminate(proc)
            raise DeadlineExceeded(f"{' '.join(self.argv[:2])} did not finish within {timeout:g}s") from None
        except BaseException:
            _terminate(proc)
            raise
        if check and proc.returncode != 0:
            raise CommandFailed(self.argv, proc.returncode, _message(err))
        return CommandResult(proc.returncode, out, err)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(TERM_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


def _message(stderr: bytes) -> str:
    """runc logs JSON-ish lines (level=error msg="..."); keep the last meaningful one."""
    text = stderr.decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    marker = 'msg="'
    if marker in last:
        last = last.split(marker, 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return last[-2000:]
