"""The one way the runtime runs a helper program (runc, conmon's runtime
calls): ``hawser.host``'s process runner, with the runtime's error kinds.

Every call has a timeout; stderr goes into the raised error; a timeout or an
interrupt sends SIGTERM, then SIGKILL, and the child is always reaped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from hawser.errors import FailedPrecondition, HawserError, NotFound
from hawser.host import Process, ProcessResult, spawn_process

TERM_GRACE = 2.0

# What a finished command returned (runc's callers know it by this name).
CommandResult = ProcessResult


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
        process = spawn_process(argv, stdin=input, env=env, pass_fds=pass_fds, grace=TERM_GRACE)
    except FileNotFoundError:
        raise NotFound(f"{argv[0]} is not installed", hint="run scripts/setup.sh") from None
    except PermissionError as exc:
        raise FailedPrecondition(f"cannot run {argv[0]}: {exc.strerror}") from None
    return RunningCommand(process)


class RunningCommand:
    """A helper program started by start_command."""

    def __init__(self, process: Process) -> None:
        self.argv = process.argv
        self._process = process

    def finish(self, *, timeout: float, input: bytes | None = None, check: bool = True) -> CommandResult:
        """Wait for the exit (feeding ``input``); the errors of run_command
        (the timeout's is host's ProcessTimedOut, a DeadlineExceeded)."""
        result = self._process.communicate(input, timeout=timeout)
        if check and result.returncode != 0:
            raise CommandFailed(self.argv, result.returncode, _message(result.stderr))
        return result


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
