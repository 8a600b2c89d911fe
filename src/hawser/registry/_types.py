"""The registry client's options and results."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx

from hawser import __version__
from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument
from hawser.oci import Descriptor
from hawser.registry._credentials import DEFAULT_DOCKER_CONFIG, DEFAULT_HELPER_TIMEOUT, CredentialsFunc


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryOptions:
    """How a RegistryClient reaches registries.  Every field has a usable default.

    ``transport``, ``clock`` and ``sleep`` are the I/O seams: tests inject an
    in-memory transport and a fake clock instead of patching anything.
    """

    # containerd-style hosts directory (certs.d/<host>/hosts.toml); None: no config.
    config_dir: str | os.PathLike[str] | None = None
    # Talk http to a namespace's default server (the CLI's --plain-http).
    plain_http: bool = False
    # No byte for this many seconds on a connection -> DeadlineExceeded.
    stall_timeout: float = 30.0
    # A body that brings fewer bytes than this in stall_timeout seconds of
    # waiting (a slow drip, which never goes quiet long enough for the stall
    # timeout) has stalled too; 0 turns the check off.  The default, 1 KiB per
    # 30 s, is far below any working link.
    stall_bytes: int = 1024
    # Seconds to establish a connection (a host's dial_timeout overrides it).
    connect_timeout: float = 30.0
    # Wall-clock limit of one operation (a resolve, a whole blob download); None: none.
    deadline: float | None = None
    # Further tries after a 5xx, 429 or dropped connection (per host, per resume point).
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    # host -> Credentials; consulted before the docker config (CRI passes auth per request).
    credentials: CredentialsFunc | None = None
    # docker config.json whose "auths" hold credentials; None: do not read one.
    docker_config: str | os.PathLike[str] | None = DEFAULT_DOCKER_CONFIG
    # Seconds a credential helper the docker config names (docker-credential-NAME) may take per call.
    credential_helper_timeout: float = DEFAULT_HELPER_TIMEOUT
    user_agent: str = f"hawser/{__version__}"
    # Size of the chunks a BlobStream yields.
    chunk_size: int = 1 << 20
    transport: httpx.BaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        for name in ("stall_timeout", "connect_timeout", "credential_helper_timeout"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"registry option {name} must be positive, not {getattr(self, name)!r}")
        if self.deadline is not None and not self.deadline > 0:
            raise InvalidArgument(f"registry option deadline must be positive, not {self.deadline!r}")
        if self.max_retries < 0:
            raise InvalidArgument(f"registry option max_retries must not be negative, not {self.max_retries}")
        if self.stall_bytes < 0:
            raise InvalidArgument(f"registry option stall_bytes must not be negative, not {self.stall_bytes}")
        if self.chunk_size < 1:
            raise InvalidArgument(f"registry option chunk_size must be positive, not {self.chunk_size}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise InvalidArgument("registry options backoff_base and backoff_max must not be negative")


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference resolved to its root manifest or index, bytes verified."""

    descriptor: Descriptor
    data: bytes
