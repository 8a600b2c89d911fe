"""The runtime part's values (a container's state, what inspect shows, an
exec's result) and what the container service needs from outside its part:
images to make containers from (the image service provides them; runtime
does not import it)."""

from __future__ import annotations

import time

from hawser._dataclass import dataclass
from hawser.metadata import Container
from hawser.oci import ImageConfig

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # the roles are for type checkers; at run time plain base classes


# States, as docker and the CRI name them.
CREATED, RUNNING, PAUSED, EXITED, UNKNOWN = "created", "running", "paused", "exited", "unknown"

# What observers hear (ContainerManager.observers): after a create, a start,
# an exit (heard once, by whoever reads it first), a removal; and an exec's
# start and end.
EVENT_CREATED, EVENT_STARTED, EVENT_STOPPED, EVENT_DELETED = "created", "started", "stopped", "deleted"
EVENT_EXEC_STARTED, EVENT_EXEC_EXITED = "exec-started", "exec-exited"


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    state: str
    pid: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    oom_killed: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    record: Container
    status: ContainerStatus
    bundle: str
    log_path: str

    @property
    def id(self) -> str:
        return self.record.id

    def command(self) -> tuple[list[str], list[str]]:
        """The entrypoint and cmd the container runs (the image's where not
        overridden, as docker decides); a record older than that knows only
        its overrides."""
        config = self.record.config
        command = config.get("command") or {"entrypoint": config.get("entrypoint") or [],
                                            "cmd": config.get("args") or []}
        return [str(a) for a in command["entrypoint"]], [str(a) for a in command["cmd"]]

    def to_json(self) -> dict[str, Any]:
        r, s = self.record, self.status
        entrypoint, cmd = self.command()
        args = [*entrypoint, *cmd]
        return {
            "Id": r.id, "Name": r.name, "Image": r.image, "ImageId": r.image_id, "Created": _iso(r.created_at),
            "Path": args[0] if args else "", "Args": args[1:],
            "State": {"Status": s.state, "Running": s.state == RUNNING, "Paused": s.state == PAUSED,
                      "Pid": s.pid, "ExitCode": s.exit_code, "OOMKilled": s.oom_killed,
                      "StartedAt": _iso(s.started_at), "FinishedAt": _iso(s.finished_at), "Reason": s.reason},
            "Config": {**r.config, "Entrypoint": entrypoint, "Cmd": cmd}, "Labels": dict(r.labels), "Snapshot": {"Snapshotter": r.snapshotter,
                                                                             "Key": r.snapshot_key},
            "Bundle": self.bundle, "LogPath": self.log_path,
        }


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class RunnableImage(Protocol):
    """A stored image, unpacked, that a container can be made from."""

    @property
    def name(self) -> str:
        """The stored name (a full reference)."""
        ...

    @property
    def image_id(self) -> str:
        """The config digest."""
        ...

    @property
    def config(self) -> ImageConfig:
        ...

    @property
    def top_snapshot(self) -> str:
        """The key of the top layer's committed snapshot; "" for an image without layers."""
        ...


class ImageResolver(Protocol):
    def runnable(self, text: str) -> RunnableImage:
        """The image ``text`` names (a reference, an image ID or a unique prefix
        of one). NotFound if there is none, InvalidArgument for an ambiguous
        prefix, FailedPrecondition if it is not unpacked. Read-only."""
        ...
