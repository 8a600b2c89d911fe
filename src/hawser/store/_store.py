"""``Store``: the library root. One root/state pair, opened once.

It owns what every service shares: the content store, the metadata database
(a store per record kind), the snapshotter, the configuration, the locks
directory, the namespace and the store's identity.  The identity (a random id
kept in ``root/store-id``) names what the store leaves on the host outside its
own directories: its default cgroup parent is ``/hawser/<id[:12]>``, so that
several stores on one host (a second ``--root``, the test suite, hawserd)
never take each other's cgroups for their own.  The CLI, hawserd, ``system check`` and the tests
open it the same way (``Store.open``); the image, container and pod services
sit on top and take the roles they need from it.  Several processes may open
one root at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from hawser._logging import get_logger
from hawser.config import Config
from hawser.content import ContentStore, LocalStore
from hawser.errors import HawserError, Internal, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from hawser.host import proc_stat
from hawser.metadata import DEFAULT_NAMESPACE, RESOURCE_INGEST, Metadata
from hawser.snapshots import Kind, Snapshotter

log = get_logger(__name__)

LEASE_OWNER_PID = "hawser.io/lease.owner-pid"
RESERVE_NAME = "reserve"
RESERVE_BYTES = 1 << 20
ID_NAME = "store-id"
CGROUP_PARENT_BASE = "/hawser"


class Store:
    """The shared parts of one store, seen from one namespace."""

    def __init__(self, *, config: Config, content: ContentStore, metadata: Metadata, snapshotter: Snapshotter,
                 namespace: str = DEFAULT_NAMESPACE, id_: str = "") -> None:
        self.id = id_
        self.config = config
        self.content = content
        self.metadata = metadata
        self.snapshotter = snapshotter
        self.namespace = namespace
        self.locks_dir = os.path.join(config.state, "locks")

    @classmethod
    def open(cls, config: Config, *, namespace: str = DEFAULT_NAMESPACE, to_free_space: bool = False) -> Store:
        """Open (or create) the store under ``config.root`` and ``config.state``.

        ``to_free_space`` (prune): on a full disk, first give back the
        reserve, so that SQLite has the room to record what prune removes."""
        from hawser.snapshots import new_snapshotter, overlay_supported

        for path in (config.root, config.state):
            os.makedirs(path, mode=0o711, exist_ok=True)
        id_ = _store_id(config.root)
        config = with_cgroup_parent(config, id_)
        reserve = os.path.join(config.root, RESERVE_NAME)
        if to_free_space and _free_bytes(config.root) < RESERVE_BYTES and os.path.exists(reserve):
            log.warning("the disk under %s is full: releasing hawser's reserve to collect garbage", config.root)
            os.unlink(reserve)
        name = config.snapshotter
        snap_root = os.path.join(config.root, "snapshots")
        # Probe only a new store: one that already holds overlay snapshots keeps
        # using them (a probe can fail for passing reasons, such as a full disk).
        existing = os.path.exists(os.path.join(snap_root, name, "metadata.db"))
        if name == "overlayfs" and not existing and not overlay_supported(snap_root):
            log.warning("overlayfs is not usable under %s; using the native snapshotter", config.root)
            name = "native"
        store = cls(
            config=config,
            content=LocalStore(os.path.join(config.root, "content")),
            metadata=Metadata(os.path.join(config.root, "metadata.db")).in_namespace(namespace),
            snapshotter=new_snapshotter(name, os.path.join(snap_root, name)),
            namespace=namespace,
            id_=id_,
        )
        store.keep_reserve()
        return store

    def in_namespace(self, namespace: str) -> Store:
        """The same store seen from ``namespace`` (sharing every handle: close one, close all)."""
        return Store(config=self.config, content=self.content, metadata=self.metadata.in_namespace(namespace),
                     snapshotter=self.snapshotter, namespace=namespace, id_=self.id)

    def close(self) -> None:
        self.metadata.close()
        self.snapshotter.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the reserve: room to remove things on a full disk -----------------------

    @property
    def _reserve_path(self) -> str:
        return os.path.join(self.config.root, RESERVE_NAME)

    def keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in a file that only a full disk gives back.

        SQLite needs a little room to record a removal; on a full disk the
        reserve is what lets ``system prune`` free space (see ``open``).  Best
        effort: on a disk already full there is simply no reserve."""
        if os.path.exists(self._reserve_path):
            return
        tmp = f"{self._reserve_path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.rename(tmp, self._reserve_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def make_room(self) -> None:
        """On a full disk, give back the reserve: for removals, which free space,
        and for undoing what failed for lack of it. The next store opened takes
        the reserve again once there is room."""
        if _free_bytes(self.config.root) < RESERVE_BYTES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._reserve_path)
                log.info("the disk under %s is full: gave back hawser's reserve", self.config.root)

    # --- leases --------------------------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[str]:
        """A lease protecting what an operation writes; dropped when it ends.

        If the process dies, the lease names its pid, so GC knows it is dead
        without waiting for the expiry."""
        leases = self.metadata.leases
        lease = leases.create(ttl=self.config.gc.pull_lease_ttl, labels={LEASE_OWNER_PID: _pid_token(os.getpid())})
        try:
            yield lease
        except (ResourceExhausted, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The disk filled up.  What the operation left unfinished goes now
            # rather than at the next GC or resume, since it is what fills the
            # disk: snapshots of layers it was unpacking (their own removal
            # found no room to record it), and the partial downloads of layers
            # fetched beside the one that found no room.
            self.make_room()
            self._remove_unfinished(lease)
            raise
        finally:
            leases.delete(lease)

    def _remove_unfinished(self, lease: str) -> None:
        kind = f"snapshot/{self.snapshotter.name}"
        for resource in self.metadata.leases.list_resources(lease):
            if resource.kind == RESOURCE_INGEST:
                with contextlib.suppress(NotFound, Unavailable):
                    self.content.abort(resource.key, wait=False)  # Unavailable: another pull writes it
            elif resource.kind == kind:
                with contextlib.suppress(HawserError):
                    if self.snapshotter.stat(resource.key).kind is not Kind.COMMITTED:
                        self.snapshotter.remove(resource.key)


def with_cgroup_parent(config: Config, store_id: str) -> Config:
    """``config`` with its cgroup parent settled: the configured one, or, when
    none is ("", the default), the store's own ``/hawser/<id[:12]>``."""
    if config.runtime.cgroup_parent:
        return config
    from hawser._dataclass import replace

    runtime = replace(config.runtime, cgroup_parent=f"{CGROUP_PARENT_BASE}/{store_id[:12]}")
    return replace(config, runtime=runtime)


def _store_id(root: str) -> str:
    """The store's id, made at its first open. Two processes opening a new store
    at once agree: the first link wins, the other reads it."""
    path = os.path.join(root, ID_NAME)
    for _ in range(2):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except FileNotFoundError:
            pass
        else:
            if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
                return text
            raise InvalidArgument(f"{path} is not a store id ({text[:40]!r})",
                                  hint="it holds 32 lowercase hex digits; restore it, or remove it for a new id")
        from hawser.host import atomic_write

        atomic_write(path, os.urandom(16).hex() + "\n", mode=0o644, replace=False)  # the first writer wins
    raise Internal(f"cannot make or read the store id at {path}")


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _pid_token(pid: int) -> str:
    """``pid:starttime``: a pid alone may be reused by another process."""
    stat = proc_stat(pid)
    return f"{pid}:{stat.start_time if stat is not None else 0}"


def lease_owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that took a lease (its ``LEASE_OWNER_PID`` label) still
    runs: the same pid with the same start time, and not a zombie (a dead process
    nobody waited for: pid 1 does not reap on every host). GC and ``system check``
    drop a lease whose owner is gone. Without the label (or with one not ours to
    read) the lease's expiry alone decides."""
    token = labels.get(LEASE_OWNER_PID)
    if not token:
        return True
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    stat = proc_stat(pid)
    if stat is None or not stat.alive:
        return False
    return start in ("", "0") or str(stat.start_time) == start


__all__ = ["LEASE_OWNER_PID", "RESERVE_BYTES", "Store", "lease_owner_alive"]
