"""The streaming server's small types: the CRI requests it serves, terminal
sizes, the byte-stream roles, and the runtime it drives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class TerminalSize:
    """A terminal size in character cells, as a client's resize stream reports it."""

    width: int
    height: int


class AsyncReader(Protocol):
    """Bytes from the client (stdin, a forwarded connection's upstream)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (any amount when n < 0), waiting for some.

        Returns b"" once the client half-closed the stream or went away.
        Never raises for a vanished client.
        """
        ...


class AsyncWriter(Protocol):
    """Bytes to the client (stdout, stderr, a forwarded connection's downstream)."""

    async def write(self, data: bytes) -> None:
        """Send ``data``, waiting while the client reads slowly (backpressure).

        Bytes written after ``close()`` or after the client went away are
        dropped: the session then cancels the runtime call anyway.
        """
        ...

    async def close(self) -> None:
        """End this stream (the client reads end-of-stream). Idempotent."""
        ...


class DuplexStream(AsyncReader, AsyncWriter, Protocol):
    """One forwarded connection: read what the client sends, write what the pod answers."""


class StreamingRuntime(Protocol):
    """What the streaming server needs from the runtime (the CRI daemon implements it).

    Every call is cancelled when the client goes away or the server stops:
    an exec should then kill its process, an attach just detaches, a port
    forward closes its connection into the pod.  Errors are raised as
    ``hawser.errors`` kinds; their message reaches the client verbatim.
    """

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: AsyncReader | None,
                   stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                   resize: AsyncIterator[TerminalSize]) -> int:
        """Run ``cmd`` in the container, wired to the given streams; return its exit code.

        ``stdin`` is None unless requested; its end-of-stream is the client's
        half-close.  With ``tty`` the command gets a terminal: its output goes
        to ``stdout`` only, and ``resize`` yields the client's window sizes
        (it ends with the session).  NotFound for an unknown container,
        FailedPrecondition when it is not running.
        """
        ...

    async def attach(self, container_id: str, *, tty: bool, stdin: AsyncReader | None,
                     stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                     resize: AsyncIterator[TerminalSize]) -> None:
        """Attach the streams to the container's main process until it exits or the client leaves.

        NotFound for an unknown container, FailedPrecondition when it is not running.
        """
        ...

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        """Connect ``stream`` to ``port`` on localhost inside the sandbox's network namespace.

        Returns when both directions are done.  NotFound for an unknown
        sandbox, Unavailable when nothing listens on the port.
        """
        ...


def _require_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> None:
    # The CRI contract (api.proto, ExecRequest/AttachRequest): one of stdin,
    # stdout, stderr MUST be true; with tty, stderr MUST be false because a
    # terminal merges both outputs into one stream.
    if not (stdin or stdout or stderr):
        raise InvalidArgument("one of stdin, stdout and stderr must be requested")
    if tty and stderr:
        raise InvalidArgument("tty and stderr cannot both be requested",
                              hint="a terminal merges stderr into stdout; request stdout only")


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """CRI ExecRequest: run ``cmd`` in a container, streaming the chosen stdio."""

    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cmd", tuple(self.cmd))

    def validate(self) -> None:
        """InvalidArgument unless the request is one the CRI contract allows."""
        if not self.container_id:
            raise InvalidArgument("exec: container_id is required")
        if not self.cmd or not self.cmd[0]:
            raise InvalidArgument(f"exec in container {self.container_id}: cmd is required")
        _require_streams(self.stdin, self.stdout, self.stderr, self.tty)


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """CRI AttachRequest: attach to a running container's main process."""

    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False

    def validate(self) -> None:
        """InvalidArgument unless the request is one the CRI contract allows."""
        if not self.container_id:
            raise InvalidArgument("attach: container_id is required")
        _require_streams(self.stdin, self.stdout, self.stderr, self.tty)


@dataclass(frozen=True, slots=True)
class PortForwardRequest:
    """CRI PortForwardRequest: forward connections to ports of a pod sandbox.

    ``port`` (repeated, as in CRI) limits which ports a client may ask for;
    empty means any port the client names.
    """

    pod_sandbox_id: str
    port: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "port", tuple(self.port))

    def validate(self) -> None:
        """InvalidArgument unless the sandbox is named and every port is in 1-65535."""
        if not self.pod_sandbox_id:
            raise InvalidArgument("port forward: pod_sandbox_id is required")
        for number in self.port:
            if not 0 < number < 65536:
                raise InvalidArgument(f"port forward to sandbox {self.pod_sandbox_id}: invalid port {number}")


StreamRequest = ExecRequest | AttachRequest | PortForwardRequest
