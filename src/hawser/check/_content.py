"""Blobs and ingests: every blob's bytes against its name, records against
files, files nothing names, and interrupted writes nothing holds.

A corrupt blob goes, file and records (in every namespace), so that the next
pull fetches it again: a pull skips what the store has, and the store has
only what is whole.  Images and the snapshots unpacked from the blob stay:

- the image record stays so that ``hawser images`` still lists the name, now
  as needing a pull (the records area reports it as ``image-incomplete``);
- snapshots unpacked from a layer were verified against the config's diff_id
  when they were made, after the bytes had been hashed on their way in, so a
  later bit flip in the compressed copy says nothing about them; removing
  them would stop every container of the image for no gain. The next pull
  finds them committed, and only fetches the layer blob again.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable

from hawser.check._context import Context, NotRepaired, Records, Resolved, listdir
from hawser.check._records import image_needs
from hawser.check._types import BLOB_CORRUPT, BLOB_MISSING, BLOB_ORPHAN, INGEST_LEFTOVER, INGEST_STALE
from hawser.content import Cleaner, PathProvider
from hawser.content import Info as BlobInfo
from hawser.content import Status as IngestStatus
from hawser.errors import NotFound, Unavailable
from hawser.host import lock_held
from hawser.metadata import RESOURCE_CONTENT, RESOURCE_INGEST, content_refs
from hawser.oci import Digest

_HELD = "a live lease holds it (a pull is using it): run the check again once the pull is done"


def check_content(ctx: Context) -> None:
    # 1. What is on disk, before the records are read (see _context).
    files = {info.digest: info for info in ctx.content.walk()}
    ingests = ctx.content.list_statuses()
    ingest_root = os.path.join(ctx.config.root, "content", "ingest")
    ingest_dirs = listdir(ingest_root)
    # 2. The records.
    records = ctx.read_records()
    users = image_needs(ctx, records)
    for info in files.values():
        with ctx.guard(f"blob {info.digest}"):
            _verify(ctx, info, users)
    for digest in sorted(records.blobs.keys() - files.keys()):
        with ctx.guard(f"blob {digest}"):
            _record_without_file(ctx, digest, records, users)
    named = _named(records) | users.keys()
    for info in files.values():
        if info.digest in named or info.digest in ctx.corrupt or info.created > ctx.fresh_after:
            continue
        if (RESOURCE_CONTENT, str(info.digest)) in records.leased:
            continue
        with ctx.guard(f"blob {info.digest}"):
            _orphan(ctx, info)
    for status in ingests:
        with ctx.guard(f"ingest {status.ref}"):
            _ingest(ctx, status, records)
    with ctx.guard("ingest directories"):
        _ingest_leftovers(ctx, ingest_root, ingest_dirs, ingests)


def _named(records: Records) -> set[Digest]:
    """Digests some record names: a blob record, an image target, a gc.ref.content label."""
    named = set(records.blobs) | {image.target.digest for image in records.images}
    for blobs in records.blobs.values():
        for blob in blobs:
            named.update(content_refs(blob.labels))
    return named


def _used_by(users: dict[Digest, set[str]], digest: Digest) -> str:
    names = sorted(users.get(digest, ()))
    return f"; needed by image {', '.join(names)}" if names else ""


def hash_blob(ctx: Context, digest: Digest) -> tuple[Digest, tuple[int, int]] | None:
    """The digest of a blob's bytes as they are on disk (streamed) and its file's
    identity (device, inode); None when it is gone."""
    try:
        f = ctx.content.open(digest)
    except NotFound:
        return None
    with f:
        st = os.fstat(f.fileno())
        actual = hashlib.file_digest(f, digest.algorithm)  # type: ignore[arg-type]
    return Digest(f"{digest.algorithm}:{actual.hexdigest()}"), (st.st_dev, st.st_ino)


def _identity(ctx: Context, digest: Digest) -> tuple[int, int] | None:
    content = ctx.content
    try:
        if isinstance(content, PathProvider):
            st = os.stat(content.path(digest))
            return st.st_dev, st.st_ino
        with content.open(digest) as f:
            st = os.fstat(f.fileno())
            return st.st_dev, st.st_ino
    except (NotFound, FileNotFoundError):
        return None


def _exists(ctx: Context, digest: Digest) -> bool:
    try:
        ctx.content.info(digest)
        return True
    except NotFound:
        return False


def _verify(ctx: Context, info: BlobInfo, users: dict[Digest, set[str]]) -> None:
    digest = info.digest
    hashed = hash_blob(ctx, digest)
    if hashed is None:
        return  # removed while we walked
    actual, identity = hashed
    if actual == digest:
        return
    ctx.corrupt.add(digest)

    def repair() -> None:
        with ctx.write_locked() as c:
            if ctx.held_by_live_lease(c, RESOURCE_CONTENT, str(digest)):
                raise NotRepaired(_HELD)
            now = _identity(ctx, digest)
            if now is not None and now != identity:
                again = hash_blob(ctx, digest)
                if again is not None and again[0] == digest:
                    raise Resolved("an intact copy replaced it meanwhile")
            # Records before the file, in one transaction: a crash leaves an
            # orphan file (which GC removes), never a record of a missing file.
            c.execute("DELETE FROM blobs WHERE digest = ?", (str(digest),))
            if now is not None:
                try:
                    ctx.content.delete(digest)
                except NotFound:
                    pass
        ctx.corrupt.discard(digest)

    ctx.report(BLOB_CORRUPT, str(digest),
               f"{info.size} bytes on disk hash to {actual}{_used_by(users, digest)} "
               "(repair removes the file and its records; the next pull fetches it again)",
               repair=repair)


def _record_without_file(ctx: Context, digest: Digest, records: Records, users: dict[Digest, set[str]]) -> None:
    if _exists(ctx, digest):
        return  # committed after our listing (its record follows the file)
    namespaces = sorted({blob.namespace for blob in records.blobs[digest]})

    def repair() -> None:
        with ctx.write_locked() as c:
            if _exists(ctx, digest):
                raise Resolved("its file is back")
            if ctx.held_by_live_lease(c, RESOURCE_CONTENT, str(digest)):
                raise NotRepaired(_HELD)
            c.execute("DELETE FROM blobs WHERE digest = ?", (str(digest),))

    ctx.report(BLOB_MISSING, str(digest),
               f"recorded in namespace {', '.join(namespaces)} but its file is gone{_used_by(users, digest)} "
               "(repair drops the record; pull the image again)", repair=repair)


def _claimed(ctx: Context, c: sqlite3.Connection, digest: Digest) -> bool:
    return bool(
        c.execute("SELECT 1 FROM blobs WHERE digest = ? LIMIT 1", (str(digest),)).fetchone()
        or c.execute("SELECT 1 FROM images WHERE digest = ? LIMIT 1", (str(digest),)).fetchone()
        or c.execute("SELECT 1 FROM blobs, json_each(blobs.labels) AS j WHERE j.value = ? LIMIT 1",
                     (str(digest),)).fetchone()
        or ctx.held_by_live_lease(c, RESOURCE_CONTENT, str(digest))
    )


def _orphan(ctx: Context, info: BlobInfo) -> None:
    digest = info.digest
    if _identity(ctx, digest) is None:
        return

    def repair() -> None:
        with ctx.write_locked() as c:
            if _claimed(ctx, c, digest):
                raise Resolved("claimed meanwhile: kept")
            try:
                ctx.content.delete(digest)
            except NotFound:
                raise Resolved("removed meanwhile") from None

    ctx.report(BLOB_ORPHAN, str(digest),
               f"{info.size} bytes that no record, image or live lease names (garbage collection would remove it)",
               repair=repair)


def _ingest(ctx: Context, status: IngestStatus, records: Records) -> None:
    last = max(status.started_at, status.updated_at)
    if (RESOURCE_INGEST, status.ref) in records.leased or last > ctx.fresh_after:
        return
    if ctx.content.in_use(status.ref):
        return  # a live writer holds its lock
    try:
        now = ctx.content.status(status.ref)
    except NotFound:
        return  # its writer committed or aborted it since the listing: never stale
    if now.updated_at != status.updated_at or now.offset != status.offset:
        return  # written since the listing: a writer that had not locked it yet when asked

    def repair() -> None:
        with ctx.write_locked() as c:
            if ctx.held_by_live_lease(c, RESOURCE_INGEST, status.ref):
                raise Resolved("a pull claimed it meanwhile: kept")
            try:
                ctx.content.abort(status.ref, wait=False)
            except Unavailable:
                raise Resolved("a writer took it up meanwhile: kept") from None
            except NotFound:
                raise Resolved("gone meanwhile") from None

    total = "?" if status.total is None else str(status.total)
    ctx.report(INGEST_STALE, status.ref,
               f"{status.offset} of {total} bytes of {status.expected}, last written {_ago(ctx.now - last)} ago; "
               "no writer or live lease holds it", repair=repair)


def _ingest_leftovers(ctx: Context, root: str, names: Iterable[str], ingests: list[IngestStatus]) -> None:
    """Ingest directories no ref names (a crash before the ``ref`` file was written)."""
    known = {hashlib.sha256(status.ref.encode()).hexdigest() for status in ingests}
    leftovers = []
    for name in names:
        path = os.path.join(root, name)
        if name in known or not os.path.isdir(path) or ingest_dir_locked(path):
            continue
        try:
            if os.stat(path).st_mtime > ctx.fresh_after:
                continue
        except FileNotFoundError:
            continue
        leftovers.append(path)
    if not leftovers:
        return
    cleaned: set[str] | None = None
    for path in leftovers:

        def repair(path: str = path) -> None:
            nonlocal cleaned
            if cleaned is None:
                content = ctx.content
                if not isinstance(content, Cleaner):
                    raise NotRepaired("this content store cannot clean up ingest directories")
                cleaned = set(content.cleanup())
            if os.path.lexists(path):
                raise NotRepaired("still there: it holds a readable ingest, or a writer locked it meanwhile")

        ctx.report(INGEST_LEFTOVER, path, "an ingest directory without its ref (a write interrupted as it began)",
                   repair=repair)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ingest_dir_locked(path: str) -> bool:
    """Whether a writer holds the flock of the ingest directory ``path`` (its ``lock`` file)."""
    return lock_held(os.path.join(path, "lock"))


__all__ = ["check_content", "hash_blob", "ingest_dir_locked"]
