"""The local content store (after containerd's plugins/content/local).

Layout under ``root``::

    blobs/sha256/<hex>            committed blobs, mode 0444, never rewritten
    blobs/sha512/<hex>
    ingest/<sha256 of ref>/       one directory per write in progress
        ref        the ref itself (the directory name is only its hash)
        expected   the digest being written
        total      the announced size, empty when unknown
        startedat  when this attempt started (seconds since the epoch)
        data       the bytes so far
        lock       flock'ed by the one writer of this ref

Crash safety: bytes go to ``ingest/.../data``; commit fsyncs them, verifies size
and digest, renames the file into ``blobs/`` (atomic: a blob is whole or absent)
and fsyncs the directory.  A process killed mid-write leaves the ingest, which
the next writer of the same ref resumes from its offset.

Ingest directories are created and removed by several processes without any
other coordination than the lock file, so both sides follow one rule: a lock is
only valid while the locked file is still the directory's ``lock`` (same inode);
whoever removes an ingest holds the lock, unlinks every other file first and the
lock file last.  A writer that locked a file that was then removed retries.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from types import TracebackType

from hawser._failpoints import failpoint
from hawser.content._types import Cleaner, Info, PathProvider, Status, Store, Verifier
from hawser.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from hawser.host import atomic_write, fsync_dir, lock_fd, try_lock_fd
from hawser.oci import Digest

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)

_ALGORITHMS = ("sha256", "sha512")
_CHUNK = 1 << 20
# Errors that mean "the disk is full" (EDQUOT: a quota, same remedy).
_NOSPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOSPACE_HINT = "free disk space (hawser rmi unused images, then hawser system prune) and retry"


def _digest(value: Digest | str) -> Digest:
    # Digest() validates and rejects unknown algorithms with Unimplemented;
    # it returns a Digest unchanged.
    return Digest(value)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def _write_text(path: str, text: str) -> None:
    # Never half a value; no fsync: losing an ingest's metadata only costs a restart of that ingest.
    atomic_write(path, text, durable=False)


def _remove_ingest_dir(path: str) -> None:
    """Remove an ingest directory whose lock the caller holds.

    The lock file goes last so that a waiter on the lock wakes to find it gone
    (and starts over) instead of finding a half-removed directory it believes
    it owns.
    """
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        if name == "lock":
            continue
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.unlink(os.path.join(path, "lock"))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(path)
    except OSError as exc:
        # ENOTEMPTY: a new writer of the same ref created its lock file in the
        # moment between our unlink and rmdir; the directory is now its own.
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
            raise


class _IngestLock:
    """The flock on one ingest directory's ``lock`` file."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            # Closing the only descriptor of the open file description drops the flock.
            os.close(self.fd)
            self.fd = -1

    def remove_and_release(self) -> None:
        try:
            _remove_ingest_dir(self.path)
        finally:
            self.release()


def _lock_ingest(path: str, ref: str, *, wait: bool, create: bool) -> _IngestLock | None:
    """Lock the ingest directory ``path``; None when it does not exist and not ``create``."""
    lock_path = os.path.join(path, "lock")
    while True:
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                return None
            continue  # removed between our makedirs and open: make it again
        try:
            if wait:
                lock_fd(fd)
            elif not try_lock_fd(fd):
                raise Unavailable(
                    f"ingest {ref} is in use by another process",
                    hint="another pull is writing this blob; wait for it to finish",
                )
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(lock_path)
        except (FileNotFoundError, NotADirectoryError):
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return _IngestLock(path, fd)
        # We locked a lock file that its remover had already unlinked.
        os.close(fd)
        if current is None and not create:
            return None


class LocalStore(Store, Verifier, PathProvider, Cleaner):
    """A content store in a directory (see the module docstring for the layout).

    Stateless apart from its root, so one instance can be shared by threads;
    several processes may use one root at once.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingests = os.path.join(self.root, "ingest")
        for algorithm in _ALGORITHMS:
            os.makedirs(os.path.join(self._blobs, algorithm), mode=0o755, exist_ok=True)
        os.makedirs(self._ingests, mode=0o700, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({self.root!r})"

    # --- paths ---------------------------------------------------------------

    def _blob_path(self, digest: Digest) -> str:
        return os.path.join(self._blobs, digest.algorithm, digest.encoded)

    def _ingest_path(self, ref: str) -> str:
        # Refs are arbitrary strings (often "layer-sha256:..."); hash them into a safe name.
        import hashlib  # lazily: opening the store for a container start hashes nothing

        return os.path.join(self._ingests, hashlib.sha256(ref.encode("utf-8")).hexdigest())

    # --- Provider ------------------------------------------------------------

    def info(self, digest: Digest) -> Info:
        digest = _digest(digest)
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None
        # ctime: the commit's chmod and rename set it, unlike mtime which is the
        # last write (possibly long before, for a resumed download).
        return Info(digest=digest, size=st.st_size, created=st.st_ctime)

    def open(self, digest: Digest) -> BinaryIO:
        digest = _digest(digest)
        try:
            return open(self._blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def read_all(self, digest: Digest, limit: int | None = None) -> bytes:
        digest = _digest(digest)
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if limit is not None and size > limit:
                raise ResourceExhausted(f"content {digest} is {size} bytes, over the limit of {limit}")
            data = f.read()
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            raise DataLoss(
                f"content {digest} is corrupt on disk: its bytes hash to {actual}",
                hint="remove the image and pull it again",
            )
        return data

    # --- Verifier, PathProvider ----------------------------------------------

    def verify(self, digest: Digest) -> bool:
        digest = _digest(digest)
        hasher = digest.hasher()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        return Digest.from_hasher(hasher) == digest

    def path(self, digest: Digest) -> str:
        digest = _digest(digest)
        path = self._blob_path(digest)
        if not os.path.isfile(path):
            raise NotFound(f"content {digest} not found")
        return path

    # --- Manager -------------------------------------------------------------

    def walk(self) -> Iterator[Info]:
        for algorithm in _ALGORITHMS:
            directory = os.path.join(self._blobs, algorithm)
            try:
                names = sorted(os.listdir(directory))
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    digest = Digest(f"{algorithm}:{name}")
                except InvalidArgument:
                    continue  # not ours (an editor's backup file, say): neither list nor touch it
                try:
                    yield self.info(digest)
                except NotFound:
                    continue  # deleted while we walked

    def delete(self, digest: Digest) -> None:
        digest = _digest(digest)
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest} not found") from None

    def usage(self) -> int:
        total = 0
        for top in (self._blobs, self._ingests):
            for directory, _dirs, files in os.walk(top):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(directory, name)).st_size
                    except FileNotFoundError:
                        continue
        return total

    # --- Ingester ------------------------------------------------------------

    def writer(self, ref: str, *, expected: Digest, total: int | None, wait: bool = True) -> _Writer:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument(f"invalid ingest ref {ref!r}: must be a non-empty string")
        expected = _digest(expected)
        if total is not None and total < 0:
            raise InvalidArgument(f"ingest {ref}: negative total {total}")
        if os.path.exists(self._blob_path(expected)):
            # Checked before taking the lock too: no need to wait for a writer
            # of something that is already there.
            raise AlreadyExists(f"content {expected} already exists")
        path = self._ingest_path(ref)
        lock = _lock_ingest(path, ref, wait=wait, create=True)
        assert lock is not None
        try:
            if os.path.exists(self._blob_path(expected)):
                # Committed by the writer we waited for: this ingest is left-overs.
                lock.remove_and_release()
                raise AlreadyExists(f"content {expected} already exists")
            return _Writer(self, lock, ref=ref, expected=expected, total=total)
        except OSError as exc:
            lock.remove_and_release()
            if exc.errno in _NOSPACE:
                raise ResourceExhausted(
                    f"no space left on device writing {ref} ({expected})", hint=_NOSPACE_HINT
                ) from None
            raise
        except BaseException:
            lock.release()
            raise

    # --- IngestManager -------------------------------------------------------

    def _read_status(self, path: str) -> Status | None:
        ref = _read_text(os.path.join(path, "ref"))
        expected_text = _read_text(os.path.join(path, "expected"))
        if not ref or expected_text is None:
            return None
        try:
            expected = Digest(expected_text.strip())
        except (InvalidArgument, ValueError):
            return None
        total_text = (_read_text(os.path.join(path, "total")) or "").strip()
        started_text = (_read_text(os.path.join(path, "startedat")) or "").strip()
        try:
            total = int(total_text) if total_text else None
            started_at = float(started_text) if started_text else 0.0
        except ValueError:
            return None
        try:
            st = os.stat(os.path.join(path, "data"))
            offset, updated_at = st.st_size, st.st_mtime
        except FileNotFoundError:
            offset, updated_at = 0, started_at
        return Status(
            ref=ref, offset=offset, total=total, expected=expected, started_at=started_at, updated_at=updated_at
        )

    def status(self, ref: str) -> Status:
        status = self._read_status(self._ingest_path(ref))
        if status is None or status.ref != ref:
            raise NotFound(f"ingest {ref} not found")
        return status

    def list_statuses(self) -> list[Status]:
        statuses = []
        for name in sorted(os.listdir(self._ingests)):
            status = self._read_status(os.path.join(self._ingests, name))
            if status is not None:
                statuses.append(status)
        statuses.sort(key=lambda s: s.ref)
        return statuses

    def abort(self, ref: str, *, wait: bool = True) -> None:
        lock = _lock_ingest(self._ingest_path(ref), ref, wait=wait, create=False)
        if lock is None:
            raise NotFound(f"ingest {ref} not found")
        lock.remove_and_release()

    def in_use(self, ref: str) -> bool:
        try:
            lock = _lock_ingest(self._ingest_path(ref), ref, wait=False, create=False)
        except Unavailable:
            return True
        if lock is not None:
            lock.release()
        return False

    # --- Cleaner -------------------------------------------------------------

    def cleanup(self) -> list[str]:
        removed = []
        for name in sorted(os.listdir(self._ingests)):
            path = os.path.join(self._ingests, name)
            if not os.path.isdir(path) or self._read_status(path) is not None:
                continue
            try:
                lock = _lock_ingest(path, name, wait=False, create=False)
            except Unavailable:
                continue  # a writer is setting it up right now
            if lock is None:
                continue
            # Checked again under the lock: the writer may have finished its setup.
            if self._read_status(path) is not None:
                lock.release()
                continue
            lock.remove_and_release()
            removed.append(path)
        return removed


class _Writer:
    """An open ingest; see ``hawser.content.Writer`` for the contract."""

    def __init__(self, store: LocalStore, lock: _IngestLock, *, ref: str, expected: Digest, total: int | None) -> None:
        self._store = store
        self._lock = lock
        self._ref = ref
        self._expected = expected
        self._hasher = expected.hasher()
        self._fd = -1
        self._closed = True  # until set up; __del__ and close() look at it
        try:
            self._open(total)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            raise
        self._closed = False

    def _open(self, total: int | None) -> None:
        ref, expected, path = self._ref, self._expected, self._lock.path
        self._data_path = os.path.join(path, "data")
        # The ref file comes first: it is what lets list_statuses and abort name
        # this directory (without it only cleanup() can).
        if _read_text(os.path.join(path, "ref")) != ref:
            _write_text(os.path.join(path, "ref"), ref)
        previous = self._store._read_status(path)
        try:
            size = os.stat(self._data_path).st_size
        except FileNotFoundError:
            size = None
        resume = (
            previous is not None
            and size is not None
            and previous.expected == expected
            and (total is None or previous.total is None or previous.total == total)
            and (total is None or size <= total)
        )
        if resume:
            assert previous is not None and size is not None
            self._total = total if total is not None else previous.total
            if previous.total is None and total is not None:
                _write_text(os.path.join(path, "total"), str(total))
            self._fd = os.open(self._data_path, os.O_RDWR | os.O_CLOEXEC)
            # hashlib state cannot be saved, so re-hash what is there to carry on.
            self._offset = self._rehash(size)
        else:
            self._total = total
            # Truncate before writing the new "expected": a crash in between then
            # leaves an empty file (valid for any digest), never old bytes under a
            # new digest.
            self._fd = os.open(self._data_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self._offset = 0
            _write_text(os.path.join(path, "expected"), str(expected))
            _write_text(os.path.join(path, "total"), "" if total is None else str(total))
            _write_text(os.path.join(path, "startedat"), repr(time.time()))

    def _rehash(self, size: int) -> int:
        done = 0
        while done < size:
            chunk = os.pread(self._fd, min(_CHUNK, size - done), done)
            if not chunk:
                break
            self._hasher.update(chunk)
            done += len(chunk)
        os.lseek(self._fd, done, os.SEEK_SET)
        return done

    def __repr__(self) -> str:
        return f"<Writer {self._ref} {self._expected} at {self._offset}>"

    @property
    def ref(self) -> str:
        return self._ref

    @property
    def expected(self) -> Digest:
        return self._expected

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def total(self) -> int | None:
        return self._total

    @property
    def data_path(self) -> str:
        return self._data_path

    def truncate(self, size: int = 0) -> None:
        self._check_open()
        if not 0 <= size <= self._offset:
            raise InvalidArgument(f"ingest {self._ref}: cannot truncate to {size}, offset is {self._offset}")
        os.ftruncate(self._fd, size)
        self._hasher = self._expected.hasher()
        self._offset = self._rehash(size)

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"writer of ingest {self._ref} is closed")

    def _discard(self) -> None:
        """Remove the ingest (partial data and all) and release the lock."""
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lock.remove_and_release()

    def _no_space(self) -> ResourceExhausted:
        # The partial data goes: it is what filled the disk, and keeping it for a
        # resume would keep the disk full.
        self._discard()
        return ResourceExhausted(
            f"no space left on device writing {self._ref} ({self._expected})", hint=_NOSPACE_HINT
        )

    def write(self, data: bytes) -> int:
        self._check_open()
        size = len(data)
        if self._total is not None and self._offset + size > self._total:
            got = self._offset + size
            self._discard()
            raise DataLoss(
                f"ingest {self._ref}: received {got} bytes for {self._expected}, "
                f"more than its size {self._total}; the partial data was removed"
            )
        view = memoryview(data).cast("B")
        written = 0
        try:
            while written < size:
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            if exc.errno in _NOSPACE:
                raise self._no_space() from None
            # Keep what is on disk: a resume re-hashes the file, whatever it holds.
            self.close()
            raise
        self._hasher.update(view)
        self._offset += size
        return size

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Info:
        self._check_open()
        if expected is not None and _digest(expected) != self._expected:
            raise InvalidArgument(
                f"ingest {self._ref}: commit expects {expected} but the writer was opened for {self._expected}"
            )
        for want in (size, self._total):
            if want is not None and want != self._offset:
                got = self._offset
                self._discard()
                raise DataLoss(
                    f"ingest {self._ref}: size mismatch for {self._expected}: expected {want} bytes, got {got}; "
                    "the partial data was removed",
                    hint="retry the pull",
                )
        actual = Digest.from_hasher(self._hasher)
        if actual != self._expected:
            self._discard()
            raise DataLoss(
                f"ingest {self._ref}: digest mismatch: expected {self._expected}, got {actual}; "
                "the partial data was removed",
                hint="the source sent corrupt data; retry the pull",
            )
        target = self._store._blob_path(self._expected)
        try:
            os.fsync(self._fd)
            # Read-only from here on: a committed blob never changes.
            os.fchmod(self._fd, 0o444)
            os.close(self._fd)
            self._fd = -1
            if os.path.exists(target):
                # Another process committed it meanwhile: same bytes, keep theirs.
                self._discard()
                return self._store.info(self._expected)
            directory = os.path.dirname(target)
            os.makedirs(directory, mode=0o755, exist_ok=True)
            failpoint("content.commit.before-rename")
            # Atomic: the blob is whole or absent. Should another writer rename
            # the same blob at the same moment, one replaces the other with
            # identical bytes; open readers keep their inode.
            os.rename(self._data_path, target)
            fsync_dir(directory)
            failpoint("content.commit.after-rename")
        except OSError as exc:
            if exc.errno in _NOSPACE:
                raise self._no_space() from None
            self.close()
            raise
        self._discard()
        st = os.stat(target)
        return Info(digest=self._expected, size=st.st_size, created=st.st_ctime)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lock.release()

    def __del__(self) -> None:
        # A writer dropped without close() must not hold its lock for the rest
        # of a long-lived process.
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def __enter__(self) -> _Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


if TYPE_CHECKING:
    from typing import BinaryIO
    # mypy checks here that LocalStore meets the whole contract and its abilities.
    def _conforms(store: LocalStore) -> tuple[Store, Verifier, PathProvider, Cleaner]:
        return store, store, store, store
