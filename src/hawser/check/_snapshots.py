"""Snapshots: every record's parent and directory, snapshots nothing uses, and
directories no record owns.

A snapshot whose parent record or directory is gone cannot be mounted, and
neither can anything built on it.  Repair removes it with everything built
on it, children first, unless a container or a live lease uses one of them
(never a live container's: remove the container first).  An image whose
unpacked layers went that way is unpacked again by its next pull (the
records area drops the config's label that named them).

A snapshot that nothing uses is what garbage collection removes: what an
interrupted pull left (the extract-* snapshots it was unpacking layers into,
the layers it committed before any image named them) once its lease is dead
(its owner gone) or expired.  Used means, as for GC: named by a container
record, a live lease, a blob record's gc.ref.snapshot label, or labelled
gc.root; younger than the grace period; or below such a snapshot in its
chain.  Beyond GC, the chain an image's config describes is kept (the records
area labels a config whose record is gone again), and so is an extract-*
snapshot whose pull still holds its layer's lock (a pull outliving its
lease).  Repair removes them children first, each as GC does: in the metadata
database's write transaction, after checking again that nothing claimed it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Mapping

from hawser.check._context import Context, NotRepaired, Records, Resolved, listdir
from hawser.check._records import image_chain_tops, image_needs, image_snapshots
from hawser.check._types import (
    SNAPSHOT_DIR_MISSING,
    SNAPSHOT_ORPHAN_DIR,
    SNAPSHOT_PARENT_MISSING,
    SNAPSHOT_UNREFERENCED,
)
from hawser.errors import FailedPrecondition, NotFound
from hawser.host import FileLock, lock_held
from hawser.metadata import LABEL_GC_REF_SNAPSHOT, LABEL_GC_ROOT, snapshot_refs, snapshot_resource
from hawser.snapshots import Info, Kind, SnapshotterBase, leftover_dirs

# The key of a snapshot a pull unpacks a layer into: extract-<pid>-<random>-<chain id[:16]>
# (hawser.images' layer pipeline), under the lock <locks>/unpack-<chain id>.lock until it is committed.
_EXTRACT = "extract-"


def check_snapshots(ctx: Context) -> None:
    snapshotter = ctx.snapshotter
    if not isinstance(snapshotter, SnapshotterBase):
        raise NotImplementedError(f"the {snapshotter.name} snapshotter does not say where its directories are")
    snapdir = os.path.join(snapshotter.root, "snapshots")
    # Rows and directories seen together: the snapshotter renames a new
    # snapshot's directory into place, and removes one, under this lock.
    with FileLock(os.path.join(snapshotter.root, "lock")):
        infos = {info.key: info for info in snapshotter.walk()}
        directories: dict[str, str] = {}
        for key in infos:
            try:
                directories[key] = snapshotter.directory(key)
            except NotFound:
                continue
        leftovers = leftover_dirs(snapdir, {os.path.basename(d) for d in directories.values()})
    records = ctx.read_records()
    tops = image_snapshots(ctx, records, image_needs(ctx, records))

    broken: dict[str, str] = {}
    for key, info in sorted(infos.items()):
        if info.parent and info.parent not in infos:
            broken[key] = f"its parent {info.parent} has no record"
        elif key in directories and not os.path.isdir(os.path.join(directories[key], "fs")):
            broken[key] = f"its directory {directories[key]} is gone"
    children: dict[str, list[str]] = {}
    for key, info in infos.items():
        if info.parent:
            children.setdefault(info.parent, []).append(key)
    doomed: set[str] = set()
    for key, reason in broken.items():
        doomed.update([key, *_descendants(children, key)])
        if any(ancestor in broken for ancestor in _ancestors(infos, key)):
            continue  # reported with the broken snapshot it is built on
        with ctx.guard(f"snapshot {key}"):
            _broken(ctx, key, reason, _descendants(children, key), records, tops)
    with ctx.guard("unreferenced snapshots"):
        _unreferenced(ctx, infos, records, reported=doomed)

    cleaned: list[bool] = []
    for path, why in leftovers:

        def repair(path: str = path) -> None:
            if not cleaned:
                # cleanup() deletes trees: never through something mounted in one
                # (a mount in a directory no snapshot owns is a leftover too).
                tops = [p for p, _ in leftovers]
                mounted = sorted((m.path for m in ctx.host.mounts()
                                  if any(m.path == t or m.path.startswith(t + "/") for t in tops)),
                                 key=lambda p: -p.count("/"))
                for target in mounted:
                    ctx.host.unmount(target)
                snapshotter.cleanup()
                cleaned.append(True)
            if os.path.lexists(path):
                raise NotRepaired("still there: its creator holds it again, or it is not empty")

        ctx.report(SNAPSHOT_ORPHAN_DIR, path, why, repair=repair)


def _unreferenced(ctx: Context, infos: Mapping[str, Info], records: Records, *, reported: Collection[str]) -> None:
    """Report (and repair) every snapshot that nothing uses (see the module
    docstring), but those ``reported`` as broken already."""
    name = ctx.snapshotter.name
    locks = _UnpackLocks(ctx.store.locks_dir)
    roots = set(image_chain_tops(ctx, records))
    roots.update(c.snapshot_key for c in records.containers if c.snapshotter == name)
    roots.update(key for kind, key in records.leased if kind == snapshot_resource(name))
    for blobs in records.blobs.values():
        for blob in blobs:
            roots.update(key for snapshotter, key in snapshot_refs(blob.labels) if snapshotter == name)
    for key, info in infos.items():
        if LABEL_GC_ROOT in info.labels or info.created > ctx.fresh_after or locks.held(key):
            roots.add(key)
    used: set[str] = set()
    todo = list(roots)
    while todo:
        key = todo.pop()
        if key in used or key not in infos:
            continue
        used.add(key)
        todo.append(infos[key].parent)
        todo.extend(k for snapshotter, k in snapshot_refs(infos[key].labels) if snapshotter == name)
    # Children first, as GC removes them: a parent goes once nothing is built on it.
    unused = sorted(infos.keys() - used - set(reported), key=lambda k: (-len(_ancestors(infos, k)), k))
    kept: set[str] = set()  # ancestors of a snapshot claimed meanwhile: in use again
    for key in unused:
        with ctx.guard(f"snapshot {key}"):
            _unused(ctx, infos, key, locks, kept)


def _unused(ctx: Context, infos: Mapping[str, Info], key: str, locks: _UnpackLocks, kept: set[str]) -> None:
    snapshotter = ctx.snapshotter
    try:
        info = snapshotter.stat(key)
    except NotFound:
        return  # committed under its chain ID, or removed, since the listing
    if info.created > ctx.fresh_after:
        return  # made again since the listing
    if info.kind is Kind.ACTIVE and key.startswith(_EXTRACT):
        what = "a layer an interrupted pull was unpacking"
    elif info.kind is Kind.COMMITTED:
        what = "a committed layer"
    else:
        what = f"a{'n' if info.kind is Kind.ACTIVE else ''} {info.kind.value} snapshot"
    try:
        what += f", {snapshotter.usage(key).size} bytes"
    except Exception:
        pass  # the size only informs

    def repair() -> None:
        if key in kept:
            raise Resolved("a snapshot built on it was claimed meanwhile: kept")
        with ctx.write_locked() as c:
            if _claimed(ctx, c, key) or locks.held(key):
                kept.update(_ancestors(infos, key))
                raise Resolved("claimed meanwhile: kept")
            try:
                snapshotter.remove(key)
            except NotFound:
                raise Resolved("removed meanwhile") from None
            except FailedPrecondition:
                raise NotRepaired("a snapshot built on it is still there: remove that first "
                                  "(run the check with --repair again)") from None

    ctx.report(SNAPSHOT_UNREFERENCED, key,
               f"{what}; no image, container or live lease uses it (garbage collection would remove it; "
               "repair removes it)", repair=repair)


def _claimed(ctx: Context, c: sqlite3.Connection, key: str) -> bool:
    """Inside ``write_locked``: whether something uses snapshot ``key`` now (GC's re-check)."""
    name = ctx.snapshotter.name
    if ctx.held_by_live_lease(c, snapshot_resource(name), key):
        return True
    if c.execute("SELECT 1 FROM containers WHERE snapshotter = ? AND snapshot_key = ?", (name, key)).fetchone():
        return True
    label = f"{LABEL_GC_REF_SNAPSHOT}.{name}"
    if c.execute("SELECT 1 FROM blobs, json_each(blobs.labels) AS j"
                 " WHERE j.value = ? AND (j.key = ? OR substr(j.key, 1, ?) = ?) LIMIT 1",
                 (key, label, len(label) + 1, label + "/")).fetchone():
        return True
    try:
        return LABEL_GC_ROOT in ctx.snapshotter.stat(key).labels
    except NotFound:
        return False


class _UnpackLocks:
    """Whether the pull that made an extract-* snapshot is still at work: it
    holds its layer's unpack lock until the snapshot is committed (or removed),
    and the kernel drops the lock when the pull dies."""

    def __init__(self, locks_dir: str) -> None:
        self.dir = locks_dir
        self.names = [n for n in listdir(locks_dir) if n.startswith("unpack-") and n.endswith(".lock")]

    def held(self, key: str) -> bool:
        if not key.startswith(_EXTRACT):
            return False
        chain = key.rsplit("-", 1)[-1]
        if not chain:
            return False
        return any(lock_held(os.path.join(self.dir, n)) for n in self.names if n.startswith(f"unpack-{chain}"))



def _ancestors(infos: Mapping[str, Info], key: str) -> list[str]:
    found, seen = [], {key}
    parent = infos[key].parent if key in infos else ""
    while parent and parent not in seen and parent in infos:
        seen.add(parent)
        found.append(parent)
        parent = infos[parent].parent
    return found


def _descendants(children: Mapping[str, list[str]], key: str) -> list[str]:
    """Everything built on ``key``, deepest first."""
    order: list[str] = []
    todo = [key]
    while todo:
        current = todo.pop()
        for child in children.get(current, ()):
            if child not in order:
                order.append(child)
                todo.append(child)
    return list(reversed(order))


def _broken(ctx: Context, key: str, reason: str, built_on: list[str], records: Records,
            tops: dict[str, set[str]]) -> None:
    name = ctx.snapshotter.name
    doomed = [*built_on, key]  # children first
    ctx.broken_snapshots.update(doomed)
    users = sorted(c.id[:12] for c in records.containers if c.snapshotter == name and c.snapshot_key in doomed)
    images = sorted({image for k in doomed for image in tops.get(k, ())})
    leased = [k for k in doomed if records.leased_snapshot(name, k)]
    detail = f"{reason}: it cannot be mounted"
    if built_on:
        detail += f", nor the {len(built_on)} snapshot(s) built on it"
    if images:
        detail += f"; unpacked layers of image {', '.join(images)}"
    if users:
        detail += f"; used by container {', '.join(users)}"

    def repair() -> None:
        if users:
            raise NotRepaired(f"container {', '.join(users)} uses it: remove the container (hawser rm -f), "
                              "then run the check with --repair again")
        if leased:
            raise NotRepaired("a live lease holds it (a pull is using it): run the check again once the pull is done")
        for each in doomed:
            with ctx.write_locked() as c:
                if ctx.held_by_live_lease(c, snapshot_resource(name), each):
                    raise NotRepaired(f"a pull claimed {each} meanwhile: run the check again once it is done")
                if c.execute("SELECT id FROM containers WHERE snapshotter = ? AND snapshot_key = ?",
                             (name, each)).fetchone():
                    raise NotRepaired(f"a container was created on {each} meanwhile: remove it first")
                try:
                    ctx.snapshotter.remove(each)
                except NotFound:
                    if each == key:
                        raise Resolved("removed meanwhile") from None
            ctx.broken_snapshots.discard(each)

    ctx.report(SNAPSHOT_PARENT_MISSING if "parent" in reason else SNAPSHOT_DIR_MISSING, key,
               detail + " (repair removes it and what is built on it; the next pull unpacks the image again)",
               repair=repair)


__all__ = ["check_snapshots"]
