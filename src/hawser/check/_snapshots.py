"""Snapshots: every record's parent and directory, and directories no record owns.

A snapshot whose parent record or directory is gone cannot be mounted, and
neither can anything built on it.  Repair removes it with everything built
on it, children first, unless a container or a live lease uses one of them
(never a live container's: remove the container first).  An image whose
unpacked layers went that way is unpacked again by its next pull (the
records area drops the config's label that named them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hawser.check._context import Context, NotRepaired, Records, Resolved
from hawser.check._records import image_needs, image_snapshots
from hawser.check._types import SNAPSHOT_DIR_MISSING, SNAPSHOT_ORPHAN_DIR, SNAPSHOT_PARENT_MISSING
from hawser.errors import NotFound
from hawser.host import FileLock
from hawser.metadata import snapshot_resource
from hawser.snapshots import Info, SnapshotterBase, leftover_dirs


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
    for key, reason in broken.items():
        if any(ancestor in broken for ancestor in _ancestors(infos, key)):
            continue  # reported with the broken snapshot it is built on
        with ctx.guard(f"snapshot {key}"):
            _broken(ctx, key, reason, _descendants(children, key), records, tops)

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
