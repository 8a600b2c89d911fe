"""What a crash may have broken or left behind, read straight from the disk.

``store_findings`` looks at a hawser root the way a fsck would, without
hawser's code (the code under test is not its own oracle):

- ``corrupt``: must never happen, crash or not: a blob whose bytes do not
  hash to its name, a record of a blob that is not there, an image whose
  pieces (blobs, layer snapshots) are missing, a snapshot row without its
  directory;
- ``garbage``: allowed after a crash until the next command or GC finishes
  the job: ingests, leases, unrecorded blob files, blob records and
  snapshots nothing reaches, snapshot dirs without a row (new-*, rm-*,
  orphan ids), a container record whose parts are gone.

``leaks`` lists what the host holds for a test's containers beyond the ones
it keeps: mounts, conmon processes, cgroups, runc state, bundles, exit files.

``system_check`` runs ``hawser system check`` when the installed hawser has
it (exit 0: clean); tests use it beside ``store_findings``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.support.aio import conmons_of

REF_CONTENT = "hawser.io/gc.ref.content"
REF_SNAPSHOT = "hawser.io/gc.ref.snapshot"
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass
class Findings:
    corrupt: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.corrupt or self.garbage)


def _rows(db: str, query: str) -> list[tuple[object, ...]]:
    if not os.path.exists(db):
        return []
    # Read-only, and without touching the WAL of a live writer's database.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _hash_file(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def store_findings(root: str, snapshotter: str = "overlayfs") -> Findings:
    """Check the store under ``root``; see the module docstring."""
    found = Findings()
    blobs_dir = os.path.join(root, "content", "blobs")
    files: set[str] = set()
    for algorithm in ("sha256", "sha512"):
        directory = os.path.join(blobs_dir, algorithm)
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            digest = f"{algorithm}:{name}"
            files.add(digest)
            if _hash_file(os.path.join(directory, name), algorithm) != name:
                found.corrupt.append(f"blob {digest}: its bytes hash to something else")
    ingest_dir = os.path.join(root, "content", "ingest")
    for name in sorted(os.listdir(ingest_dir)) if os.path.isdir(ingest_dir) else []:
        found.garbage.append(f"ingest {name}")

    db = os.path.join(root, "metadata.db")
    records = {str(d): json.loads(str(labels)) for d, labels in _rows(db, "SELECT digest, labels FROM blobs")}
    images = [(str(n), str(d)) for n, d in _rows(db, "SELECT name, digest FROM images")]
    containers = [(str(i), str(k)) for i, k in _rows(db, "SELECT id, snapshot_key FROM containers")]
    for lease, in _rows(db, "SELECT id FROM leases"):
        found.garbage.append(f"lease {lease}")
    for digest in sorted(records.keys() - files):
        found.corrupt.append(f"blob record {digest}: no file")
    for digest in sorted(files - records.keys()):
        found.garbage.append(f"blob file {digest}: no record")

    # What the images reach: blobs through their GC labels, then the top layer's chain.
    reached: set[str] = set()
    top_keys: list[tuple[str, str]] = []
    for name, target in images:
        todo = [target]
        while todo:
            digest = todo.pop()
            if digest in reached:
                continue
            reached.add(digest)
            if digest not in files:
                found.corrupt.append(f"image {name}: blob {digest} is missing")
            labels = records.get(digest)
            if labels is None:
                found.corrupt.append(f"image {name}: blob {digest} is not recorded")
                continue
            for key, value in labels.items():
                if key.startswith(REF_CONTENT + "."):
                    todo.append(value)
                elif key == f"{REF_SNAPSHOT}.{snapshotter}":
                    top_keys.append((name, value))
    for digest in sorted(records.keys() - reached):
        found.garbage.append(f"blob record {digest}: no image uses it")

    snap_root = os.path.join(root, "snapshots", snapshotter)
    rows = {str(key): (int(id_), str(parent), str(kind))  # type: ignore[call-overload]
            for id_, key, parent, kind in _rows(os.path.join(snap_root, "metadata.db"),
                                                 "SELECT id, key, parent, kind FROM snapshots")}
    ids = {id_ for id_, _, _ in rows.values()}
    for key, (id_, _, _) in sorted(rows.items()):
        if not os.path.isdir(os.path.join(snap_root, "snapshots", str(id_), "fs")):
            found.corrupt.append(f"snapshot {key} (id {id_}): its directory is missing")
    snap_dir = os.path.join(snap_root, "snapshots")
    for name in sorted(os.listdir(snap_dir)) if os.path.isdir(snap_dir) else []:
        if not (name.isdigit() and int(name) in ids):
            found.garbage.append(f"snapshot dir {name}: no row")
    used: set[str] = set()
    for name, key in top_keys:
        while key:
            if key not in rows:
                found.corrupt.append(f"image {name}: layer snapshot {key} is missing")
                break
            if rows[key][2] != "committed":
                found.corrupt.append(f"image {name}: layer snapshot {key} is {rows[key][2]}")
            used.add(key)
            key = rows[key][1]
    for id_, key in containers:
        if key in rows:
            used.add(key)
            parent = rows[key][1]
            while parent in rows and parent not in used:
                used.add(parent)
                parent = rows[parent][1]
        else:
            found.garbage.append(f"container {id_[:12]}: its snapshot {key} is gone (half made or removed)")
    for key in sorted(rows.keys() - used):
        found.garbage.append(f"snapshot {key}: nothing uses it")
    return found


def container_ids(root: str) -> list[str]:
    return [str(i) for i, in _rows(os.path.join(root, "metadata.db"), "SELECT id FROM containers")]


def _mounts_under(path: str) -> list[str]:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def cgroups_under(parent: str) -> list[str]:
    """Every cgroup dir below ``parent`` (not itself), in every hierarchy."""
    found = []
    for controller in sorted(os.listdir(CGROUP_ROOT)):
        base = os.path.join(CGROUP_ROOT, controller, parent.lstrip("/"))
        if os.path.isdir(base) and not os.path.islink(os.path.join(CGROUP_ROOT, controller)):
            for directory, dirs, _ in os.walk(base):
                found += [os.path.join(directory, d) for d in dirs]
    return sorted(found)


def remove_cgroups(parent: str) -> None:
    """Remove ``parent`` and what is below it, deepest first (empty cgroups only)."""
    for controller in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, controller, parent.lstrip("/"))
        if not os.path.isdir(base):
            continue
        for directory, _, _ in sorted(os.walk(base), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def leaks(*, base: str, root: str, state: str, cgroup_parent: str, keep: Iterable[str] = ()) -> dict[str, list[str]]:
    """What the host holds for containers other than ``keep`` (ids). Empty lists: nothing leaked."""
    keep = set(keep)

    def extra(directory: str) -> list[str]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n not in keep)

    conmons = []
    for pid in conmons_of(state):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        cid = argv[argv.index(b"--cid") + 1].decode() if b"--cid" in argv else ""
        if cid not in keep:
            conmons.append(f"{pid} {cid[:12]}")
    kept_mounts = tuple(os.path.join(state, "containers", k, "rootfs") for k in keep)
    mounts = [m for m in _mounts_under(base) if not m.startswith(kept_mounts)]
    cgroups = [c for c in cgroups_under(cgroup_parent) if os.path.basename(c) not in keep]
    return {
        "mounts": mounts, "conmon": conmons, "cgroups": cgroups,
        "runc state": extra(os.path.join(state, "runc")), "bundles": extra(os.path.join(state, "containers")),
        "exit files": extra(os.path.join(state, "exits")), "logs": extra(os.path.join(root, "containers")),
    }


def no_leaks(found: dict[str, list[str]]) -> bool:
    return not any(found.values())


_HAS_SYSTEM_CHECK: bool | None = None


def system_check_available() -> bool:
    """Whether this hawser has ``hawser system check`` (another change adds it)."""
    global _HAS_SYSTEM_CHECK
    if _HAS_SYSTEM_CHECK is None:
        proc = subprocess.run([sys.executable, "-m", "hawser.cli._run", "system", "check", "--help"],
                              capture_output=True, text=True, timeout=60, check=False)
        _HAS_SYSTEM_CHECK = proc.returncode == 0
    return _HAS_SYSTEM_CHECK


def system_check(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    """``hawser <global options> system check``, with ``argv`` the CLI up to the
    command; None when this hawser has no such command."""
    if not system_check_available():
        return None
    return subprocess.run([*argv, "system", "check"], capture_output=True, text=True, timeout=120, check=False)


__all__ = ["Findings", "cgroups_under", "container_ids", "leaks", "no_leaks", "remove_cgroups", "store_findings",
           "system_check", "system_check_available"]
