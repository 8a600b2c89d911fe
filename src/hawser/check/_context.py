"""What every area of a check shares: the store, the host, the findings, the
records as last read, and the locks and re-checks GC uses (``hawser.metadata._gc``).

Races, after GC's protocol.  An area lists what is on disk (or in /proc, or in
the mount table) *before* it reads the records, so whatever it listed was
either recorded by then (records are written first, or, for blobs, protected
by a lease attached first) or is really left over.  Every repair re-checks,
inside the metadata database's write transaction (blobs, ingests, snapshots)
or under the container's lock (runtime leftovers), that nothing has claimed
the item since, and removes it while still holding that lock.  The whole run
holds GC's ``gc.lock``: a check and a GC never run at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from hawser._dataclass import dataclass, field
from hawser.check._types import CHECK_ERROR, INFO, PROBLEM, Finding, Host
from hawser.errors import HawserError, Unavailable
from hawser.host import FileLock
from hawser.metadata import RESOURCE_SNAPSHOT_PREFIX, Blob, Container, Image, SandboxRecord
from hawser.oci import Digest

if TYPE_CHECKING:
    from hawser.store import Store


class NotRepaired(Exception):
    """A repair that was deliberately not done: the message says why and what to do."""


class Resolved(Exception):
    """The problem went away before the repair (something else fixed or claimed it)."""


def message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


@dataclass
class Records:
    """Every namespace's records, read in one go (after the disk was listed)."""

    namespaces: list[str] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    blobs: dict[Digest, list[Blob]] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    sandboxes: list[SandboxRecord] = field(default_factory=list)
    # (kind, key) of every resource of a live lease (not expired, its owner alive), any namespace.
    leased: set[tuple[str, str]] = field(default_factory=set)

    def leased_snapshot(self, snapshotter: str, key: str) -> bool:
        return (f"{RESOURCE_SNAPSHOT_PREFIX}{snapshotter}", key) in self.leased


class Context:
    def __init__(self, store: Store, host: Host, *, repair: bool, now: float, grace_period: float) -> None:
        self.store = store
        self.config = store.config
        self.content = store.content
        self.metadata = store.metadata
        self.snapshotter = store.snapshotter
        self.host = host
        self.repair = repair
        self.now = now
        self.grace_period = grace_period
        self.findings: list[Finding] = []
        # Blobs found corrupt and still on disk (a check without --repair): the
        # records area does not report the images using them a second time.
        self.corrupt: set[Digest] = set()
        # Likewise, snapshot keys found broken (or built on a broken one) and still there.
        self.broken_snapshots: set[str] = set()

    @property
    def fresh_after(self) -> float:
        """Anything created after this is within GC's grace period: not a problem yet."""
        return self.now - self.grace_period

    # --- findings --------------------------------------------------------------------

    def report(self, kind: str, subject: str, detail: str, *, severity: str = PROBLEM,
               repair: Callable[[], None] | None = None) -> Finding:
        """Record a finding; in a ``--repair`` run, run its repair first.

        ``repair`` raises NotRepaired to decline (its message is the finding's
        error), Resolved when there was nothing left to do; any other exception
        is a failed repair, reported, and the check goes on."""
        repaired, error = False, None
        if self.repair and repair is not None:
            try:
                repair()
                repaired = True
            except Resolved as exc:
                repaired = True
                detail = f"{detail} ({exc})" if str(exc) else detail
            except NotRepaired as exc:
                error = str(exc)
            except Exception as exc:
                error = message(exc)
        finding = Finding(kind=kind, subject=subject, detail=detail, severity=severity, repaired=repaired,
                          error=error)
        self.findings.append(finding)
        return finding

    def info(self, kind: str, subject: str, detail: str, *, repair: Callable[[], None] | None = None) -> Finding:
        return self.report(kind, subject, detail, severity=INFO, repair=repair)

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Report an error of the checker itself as a finding and carry on with the next part."""
        try:
            yield
        except Exception as exc:
            self.findings.append(Finding(kind=CHECK_ERROR, subject=what, detail="this part could not be checked",
                                         error=message(exc)))

    # --- records ---------------------------------------------------------------------

    def read_records(self) -> Records:
        md = self.metadata
        records = Records(namespaces=[ns.name for ns in md.namespaces.list()])
        for ns in records.namespaces:
            records.images += md.images.list(namespace=ns)
            for blob in md.blobs.list(namespace=ns):
                records.blobs.setdefault(blob.digest, []).append(blob)
            records.containers += md.containers.list(namespace=ns)
            records.sandboxes += md.sandboxes.list(namespace=ns)
            for lease in md.leases.list(namespace=ns):
                if lease.expired(self.now) or not self.host.lease_owner_alive(lease.labels):
                    continue
                try:
                    resources = md.leases.list_resources(lease.id, namespace=ns)
                except HawserError:
                    continue  # deleted meanwhile: it holds nothing any more
                records.leased.update((r.kind, r.key) for r in resources)
        return records

    # --- locks and re-checks -------------------------------------------------------------

    @contextlib.contextmanager
    def write_locked(self) -> Iterator[sqlite3.Connection]:
        """The metadata database's write transaction, as GC removes under it: a
        pull that attaches a lease or records a blob waits until we are done."""
        with self.metadata.db.transaction(write=True) as c:
            yield c

    def held_by_live_lease(self, c: sqlite3.Connection, kind: str, key: str) -> bool:
        """Inside ``write_locked``: whether a live lease holds ``(kind, key)`` now."""
        rows = c.execute(
            "SELECT l.labels FROM lease_resources r JOIN leases l ON l.namespace = r.namespace AND l.id = r.lease"
            " WHERE r.kind = ? AND r.key = ? AND (l.expires_at IS NULL OR l.expires_at > ?)",
            (kind, key, self.metadata.clock())).fetchall()
        return any(self.host.lease_owner_alive(_labels(text)) for (text,) in rows)

    @contextlib.contextmanager
    def container_lock(self, container_id: str) -> Iterator[None]:
        """The lock ContainerManager holds while it creates or removes ``container_id``
        (``<state>/locks/container-<id>.lock``). A lock file that does not exist is
        held by no one, and is not created here."""
        path = os.path.join(self.config.state, "locks", f"container-{container_id}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            yield
            return
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _labels(text: str) -> Mapping[str, str]:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@contextlib.contextmanager
def gc_lock(root: str, *, wait: bool) -> Iterator[None]:
    """GC's lock (``<root>/gc.lock``, as ``hawser.metadata._gc`` takes it)."""
    lock = FileLock(os.path.join(root, "gc.lock"))
    if not lock.acquire(blocking=wait):
        raise Unavailable(f"garbage collection is running on {root}", hint="retry when it is done")
    try:
        yield
    finally:
        lock.release()


def listdir(path: str) -> list[str]:
    """Sorted names in ``path``; empty when it does not exist."""
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise


__all__ = ["INFO", "PROBLEM", "Context", "NotRepaired", "Records", "Resolved", "gc_lock", "listdir", "message"]
