"""What a check reports (Finding, Report) and what it needs of the host (Host)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hawser._dataclass import dataclass

if TYPE_CHECKING:
    from hawser.host import CgroupLayout
    from hawser.metadata import Container
    from hawser.store import Store

# Severities. A problem makes ``hawser system check`` exit 1 (unless repaired);
# info is a state worth knowing that is not the store's fault (a pod whose
# namespaces are gone is "not ready", which hawserd handles).
PROBLEM = "problem"
INFO = "info"

# Finding kinds, one per thing a check can find (README's "system check" lists them).
# content
BLOB_CORRUPT = "blob-corrupt"              # a blob file whose bytes do not hash to its name
BLOB_MISSING = "blob-missing"              # a blob record without its file
BLOB_ORPHAN = "blob-orphan"                # a blob file no record, image, label or live lease names
BLOB_UNRECORDED = "blob-unrecorded"        # a blob an image needs, on disk, without its record
INGEST_STALE = "ingest-stale"              # an interrupted write nothing holds any more
INGEST_LEFTOVER = "ingest-leftover"        # an ingest directory a crash left before naming it
# snapshots
SNAPSHOT_PARENT_MISSING = "snapshot-parent-missing"
SNAPSHOT_DIR_MISSING = "snapshot-dir-missing"
SNAPSHOT_ORPHAN_DIR = "snapshot-orphan-dir"  # a directory no snapshot record owns (ids, new-*, rm-*)
SNAPSHOT_UNREFERENCED = "snapshot-unreferenced"  # a snapshot nothing uses (an interrupted pull's extract-*)
# records
IMAGE_INCOMPLETE = "image-incomplete"      # an image missing a blob or its unpacked layers: pull it again
SNAPSHOT_REF_MISSING = "snapshot-ref-missing"  # a config's gc.ref.snapshot label naming a missing snapshot
CONTAINER_SNAPSHOT_MISSING = "container-snapshot-missing"
CONTAINER_SANDBOX_MISSING = "container-sandbox-missing"
SANDBOX_NOT_READY = "sandbox-not-ready"    # info
# runtime leftovers (no record owns them)
BUNDLE_ORPHAN = "bundle-orphan"
RUNC_ORPHAN = "runc-orphan"
CONMON_ORPHAN = "conmon-orphan"
MOUNT_ORPHAN = "mount-orphan"
NETNS_ORPHAN = "netns-orphan"              # pinned pod namespaces
POD_DIR_ORPHAN = "pod-dir-orphan"
EXIT_FILE_ORPHAN = "exit-file-orphan"
LOG_DIR_ORPHAN = "log-dir-orphan"
ATTACH_DIR_ORPHAN = "attach-dir-orphan"    # info: conmon leaves it behind after every rm
CGROUP_ORPHAN = "cgroup-orphan"
CONTAINER_NETWORK_ORPHAN = "container-network"  # a CLI container's netns pin, CNI attachment, endpoint
# the checker itself
CHECK_ERROR = "check-error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found.

    ``subject``: what it is about (a digest, snapshot key, image name, path,
    container id...). ``repaired``: a ``--repair`` run fixed it (or found it
    fixed meanwhile). ``error``: why a repair, or the check of this item,
    failed; the run went on."""

    kind: str
    subject: str
    detail: str
    severity: str = PROBLEM
    repaired: bool = False
    error: str | None = None

    @property
    def outstanding(self) -> bool:
        """A problem that is still there after this run."""
        return self.severity == PROBLEM and not self.repaired

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail, "severity": self.severity,
                "repaired": self.repaired, "error": self.error}


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]
    repair: bool
    duration: float = 0.0

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == PROBLEM)

    @property
    def outstanding(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.outstanding)

    @property
    def exit_code(self) -> int:
        """0: nothing wrong (or everything repaired); 1: a problem remains."""
        return 1 if self.outstanding else 0


# --- the host ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MountPoint:
    path: str
    fstype: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class Process:
    """A live process; ``start`` (its start time in clock ticks) tells it from a later one with its pid."""

    pid: int
    start: int
    argv: tuple[str, ...]


class Host(Protocol):
    """Everything a check asks of the host beyond the store's own files, so unit
    tests pass a fake one (``SystemHost`` is the real one)."""

    def mounts(self) -> Sequence[MountPoint]:
        """Every mount point of this mount namespace."""
        ...

    def unmount(self, path: str) -> None:
        """Lazily unmount everything stacked on ``path``. OSError on failure."""
        ...

    def processes(self, name: str) -> Sequence[Process]:
        """The live processes called ``name`` (their comm); zombies count as dead."""
        ...

    def alive(self, process: Process) -> bool:
        """Whether ``process`` still runs (same pid and start time, not a zombie)."""
        ...

    def kill(self, process: Process) -> None:
        """SIGKILL ``process`` unless it is gone already."""
        ...

    def wait_exit(self, process: Process, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``process`` to end; whether it did."""
        ...

    def lease_owner_alive(self, labels: Mapping[str, str]) -> bool:
        """Whether the process a lease names as its owner (if any) still lives."""
        ...

    def namespace_kind(self, path: str) -> str | None:
        """The kind of the namespace pinned at ``path`` ("net", "ipc"...), None if none is."""
        ...

    def remove_pin_dir(self, path: str) -> None:
        """Unpin the namespaces in a pod's ``ns`` directory and remove it. OSError on failure."""
        ...

    def pid_namespace_alive(self, holder: int, init: int, marker: str) -> bool:
        """Whether a pod's pid namespace init (``hawser.host._infra``) still runs."""
        ...

    def runc_status(self, runc_root: str, container_id: str) -> str | None:
        """runc's status of a container (created, running, paused, stopped...), None if unknown to it."""
        ...

    def runc_delete(self, runc_root: str, container_id: str) -> None:
        """``runc delete --force``: kill the container and drop runc's state and cgroup. Idempotent."""
        ...

    def remove_container(self, store: Store, record: Container) -> None:
        """Remove a container that is not running, as ``hawser rm -f`` does (runc,
        conmon, mounts, snapshot, bundle, logs, then the record)."""
        ...

    def cgroup_layout(self) -> CgroupLayout:
        """Where the cgroup hierarchies are (tests rebase it onto a fake tree).
        FailedPrecondition when no cgroup filesystem is mounted."""
        ...
