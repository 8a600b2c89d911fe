"""The snapshotter contract (after containerd's snapshots.Snapshotter).

A snapshot is a directory tree identified by a key. ``prepare`` makes an
*active* (writable) snapshot on top of a committed parent; ``commit`` freezes
an active one under a new name so it can be a parent; ``view`` is a read-only
active snapshot.  Image layers become a chain of committed snapshots named by
their chain ID.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping

from hawser._dataclass import dataclass, field

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Protocol
else:
    # The role Protocols below are for type checkers; at run time they are plain
    # base classes, and implementations name the roles they fill.
    Protocol = object


class Kind(enum.Enum):
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class Info:
    key: str
    kind: Kind
    parent: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class Usage:
    size: int
    inodes: int


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount(2) call: ``mount -t type source target -o options``."""

    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyTarget:
    """Where a layer is unpacked for an active snapshot, without mounting anything.

    ``overlay_whiteouts``: True when ``path`` is an overlayfs upper dir, so a
    whiteout becomes a 0/0 character device and an opaque dir gets the
    ``trusted.overlay.opaque`` xattr; False when ``path`` is a full copy of the
    parent tree, so whiteouts delete. ``lowers`` are the parent chain's
    directories, nearest first (for hardlinks to lower files and checks).
    """

    path: str
    overlay_whiteouts: bool
    lowers: tuple[str, ...] = ()


class Snapshotter(Protocol):
    name: str
    # True when a snapshot prepared without a parent can be committed onto one
    # (overlayfs: a layer unpacks into its own upper dir, in parallel).
    supports_rebase: bool

    def stat(self, key: str) -> Info:
        """Info of a snapshot. NotFound if absent."""

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create an active snapshot on ``parent`` (a committed key or '').
        AlreadyExists if ``key`` exists, NotFound if the parent does not,
        FailedPrecondition if the parent is not committed."""

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Like prepare, but read-only mounts."""

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot. NotFound if absent."""

    def apply_target(self, key: str) -> ApplyTarget:
        """Where to unpack a layer into the active snapshot ``key``."""

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None, *,
               parent: str | None = None) -> None:
        """Turn active ``key`` into committed ``name``. AlreadyExists if ``name``
        exists; the active key is gone afterwards. Atomic: a crash leaves either.
        ``parent`` (only with ``supports_rebase``) commits a parentless snapshot
        on top of ``parent``."""

    def lower_dirs(self, key: str) -> list[str]:
        """The directories of ``key`` and its parents, nearest first."""

    def remove(self, key: str) -> None:
        """Remove a snapshot. NotFound if absent; FailedPrecondition if it has children."""

    def walk(self) -> Iterator[Info]:
        """Every snapshot, in no particular order."""

    def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own layer (not its parents)."""

    def update_labels(self, key: str, labels: Mapping[str, str], *, merge: bool = False) -> Info:
        """Replace the labels of a snapshot; with ``merge``, set these keys on
        its labels instead (an empty value removes a key). NotFound if absent."""

    def cleanup(self) -> list[str]:
        """Remove directories no record points at (left by a crash). Returns what went."""

    def close(self) -> None:
        """Release the snapshotter's database. Idempotent."""
