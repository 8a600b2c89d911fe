"""Runtime leftovers: what a container or a pod leaves on the host, found
without its record.

A container's record is written before anything else of it exists and
deleted after everything else is gone (``hawser.runtime._containers``), and
a pod's likewise (``hawser.cri._sandboxes``): so whatever is listed here
before the records are read, and still has no record afterwards, belongs to
no container or pod, and no live one can lose anything to a repair.  Each
repair re-checks under the container's lock (the one create and rm hold).

Repairs run in the order that lets each succeed: runc's state (``runc
delete --force`` kills the processes and drops the cgroup), conmon, mounts
(deepest first), pinned namespaces, then directories and files, and last
the cgroups that are left.

Only names hawser makes are looked at: container ids (64 hex, or the
identifier a containerd client chose), 64-hex pod ids, and ``pod-<12 hex>``
cgroups.  Several hawser stores on one host must not share
a cgroup parent: this check cannot tell another store's cgroups from its
own leftovers (it only ever removes empty ones).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from hawser.check._context import Context, NotRepaired, Resolved, listdir
from hawser.check._networks import check_container_networks, list_container_networks
from hawser.check._types import (
    ATTACH_DIR_ORPHAN,
    BUNDLE_ORPHAN,
    CGROUP_ORPHAN,
    CONMON_ORPHAN,
    EXIT_FILE_ORPHAN,
    LOG_DIR_ORPHAN,
    MOUNT_ORPHAN,
    NETNS_ORPHAN,
    POD_DIR_ORPHAN,
    RUNC_ORPHAN,
    MountPoint,
    Process,
)
from hawser.errors import NotFound
from hawser.host import CgroupLayout
from hawser.metadata import Container, SandboxRecord

ID = re.compile(r"^[0-9a-f]{64}$")
# A container's id: 64 hex when hawser made it, the client's (containerd's identifier) through containerd's API.
CONTAINER_ID = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
POD_CGROUP = re.compile(r"^pod-[0-9a-f]{12}$")
STANDIN = re.compile(r"^\.standin-([0-9a-f]{64})-")
# The overlay probe (hawser.host._overlay) mounts in a fresh store for a moment.
PROBE_AGE = 60.0
CGROUP_REMOVE_TIMEOUT = 2.0
CONMON_EXIT_WAIT = 2.0


def _under(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` when strictly below it."""
    top = top.rstrip("/")
    return path[len(top) + 1:] if path.startswith(top + "/") else None


class _Paths:
    def __init__(self, ctx: Context) -> None:
        state, root = os.path.abspath(ctx.config.state), os.path.abspath(ctx.config.root)
        self.state, self.root = state, root
        self.bundles = os.path.join(state, "containers")
        self.exits = os.path.join(state, "exits")
        self.attach = os.path.join(state, "attach")
        self.runc = os.path.join(state, "runc")
        self.pods = os.path.join(state, "sandboxes")
        self.idmap = os.path.join(state, "idmap")  # a user-namespaced container's idmapped bind copies
        self.logs = os.path.join(root, "containers")


def check_runtime(ctx: Context) -> None:
    paths = _Paths(ctx)
    # 1. Everything on the host first (see the module docstring), then the records.
    listed = {name: [n for n in listdir(path) if (ID if name == "pods" else CONTAINER_ID).match(n)]
              for name, path in (("bundles", paths.bundles), ("exits", paths.exits), ("attach", paths.attach),
                                 ("runc", paths.runc), ("pods", paths.pods), ("logs", paths.logs))}
    conmons = [p for p in ctx.host.processes("conmon") if _conmon_id(p, paths.runc)]
    # A CLI container's network pins are the network check's (check_container_networks, below).
    mounts = [m for m in _mounts_below(ctx.host.mounts(), (paths.state, paths.root))
              if _under(m.path, os.path.join(paths.state, "networks")) is None
              and _under(m.path, os.path.join(paths.root, "volumes")) is None]  # a volume's own (tmpfs) mount
    networks: list[str] = []
    with ctx.guard("container networks"):
        networks = list_container_networks(ctx)
    cgroups: dict[str, list[str]] | None = None
    layout: CgroupLayout | None = None
    with ctx.guard("cgroups"):
        layout = ctx.host.cgroup_layout()
        cgroups = _cgroup_dirs(layout.mounts.values(), ctx.config.runtime.cgroup_parent)
    records = ctx.read_records()
    containers = {c.id for c in records.containers}
    pods = {s.id for s in records.sandboxes}
    orphan = _Orphans(ctx, paths)

    def each(what: str, step: Callable[..., None], *args: object) -> None:
        with ctx.guard(what):
            step(*args)

    for id_ in listed["runc"]:
        if id_ not in containers:
            each(f"runc state {id_}", orphan.runc, id_)
    for process in conmons:
        cid = _conmon_id(process, paths.runc)
        if cid and cid not in containers:
            each(f"conmon {process.pid}", orphan.conmon, cid, process)
    pinned: dict[str, list[MountPoint]] = {}
    for mount in mounts:  # deepest first
        owner = _owner(mount.path, paths)
        if owner is None:
            if not _young_probe(mount.path, paths):
                each(f"mount {mount.path}", orphan.mount, mount, "no container or pod owns it")
            continue
        kind, id_, pin_dir = owner
        if (kind == "container" and id_ in containers) or (kind == "pod" and id_ in pods):
            continue
        if pin_dir:
            pinned.setdefault(pin_dir, []).append(mount)
        else:
            each(f"mount {mount.path}", orphan.mount, mount, f"its {kind} {id_} has no record")
    for pin_dir, pins in sorted(pinned.items()):
        each(f"pins {pin_dir}", orphan.pins, pin_dir, pins)
    for id_ in listed["bundles"]:
        if id_ not in containers:
            each(f"bundle {id_}", orphan.bundle, id_)
    for id_ in listed["pods"]:
        if id_ not in pods:
            each(f"pod directory {id_}", orphan.pod_dir, id_)
    # Files are judged for every id without a record seen anywhere above, at this
    # point: a conmon whose container went with its runc state has just written
    # its exit file.
    gone = {id_ for key in ("bundles", "exits", "attach", "runc", "logs") for id_ in listed[key]}
    gone.update(cid for p in conmons if (cid := _conmon_id(p, paths.runc)))
    for id_ in sorted(gone - containers):
        each(f"exit file {id_}", orphan.file, EXIT_FILE_ORPHAN, id_, os.path.join(paths.exits, id_),
             "conmon's exit file")
        each(f"log directory {id_}", orphan.file, LOG_DIR_ORPHAN, id_, os.path.join(paths.logs, id_),
             "a log directory")
        with ctx.guard(f"attach directory {id_}"):
            orphan.file(ATTACH_DIR_ORPHAN, id_, os.path.join(paths.attach, id_),
                        "conmon's attach socket directory (hawser rm leaves it behind)", info=True)
    with ctx.guard("container networks"):
        check_container_networks(ctx, networks, containers)
    if cgroups is not None and layout is not None:
        known = _known_cgroups(records.containers, records.sandboxes)
        for cgroup, directories in _orphan_cgroups(ctx.config.runtime.cgroup_parent, cgroups, known):
            each(f"cgroup {cgroup}", orphan.cgroup, layout, cgroup, directories)


# --- classification -------------------------------------------------------------------------


def _conmon_id(process: Process, runc_root: str) -> str | None:
    """The container id of a conmon working for this store (its runtime root is ours)."""
    argv = process.argv
    if f"--root={runc_root}" not in argv:
        return None
    try:
        id_ = argv[argv.index("--cid") + 1]
    except (ValueError, IndexError):
        return None
    return id_ if CONTAINER_ID.match(id_) else None


def _mounts_below(mounts: Iterable[MountPoint], tops: Sequence[str]) -> list[MountPoint]:
    """Mount points strictly below any of ``tops``, one per path, deepest first."""
    found: dict[str, MountPoint] = {}
    for mount in mounts:
        if any(_under(mount.path, top) is not None for top in tops):
            found.setdefault(mount.path, mount)
    return sorted(found.values(), key=lambda m: (-m.path.count("/"), m.path))


def _owner(path: str, paths: _Paths) -> tuple[str, str, str] | None:
    """(``container`` or ``pod``, its id, the pod's ``ns`` dir for a namespace pin or "")
    of a mount point; None for one no container or pod would have made."""
    for top in (paths.bundles, paths.idmap):
        rel = _under(path, top)
        if rel is not None:
            id_ = rel.split("/", 1)[0]
            return ("container", id_, "") if CONTAINER_ID.match(id_) else None
    rel = _under(path, paths.pods)
    if rel is not None:
        parts = rel.split("/")
        if not ID.match(parts[0]):
            return None
        pin_dir = os.path.join(paths.pods, parts[0], "ns") if len(parts) >= 2 and parts[1] == "ns" else ""
        return "pod", parts[0], pin_dir
    rel = _under(path, os.path.join(paths.root, "cni", "results"))
    if rel is not None:
        match = STANDIN.match(rel.split("/", 1)[0])
        return ("pod", match.group(1), "") if match else None
    return None


def _young_probe(path: str, paths: _Paths) -> bool:
    """A mount of the overlay probe that may still be running."""
    rel = _under(path, os.path.join(paths.root, "snapshots"))
    if rel is None or not rel.startswith("overlay-check-"):
        return False
    base = os.path.join(paths.root, "snapshots", rel.split("/", 1)[0])
    try:
        return time.time() - os.stat(base).st_mtime < PROBE_AGE
    except OSError:
        return False


def _cgroup_dirs(mount_points: Iterable[str], parent: str) -> dict[str, list[str]]:
    """Cgroups below ``parent`` (two levels: a container's, a pod's and its
    containers'), as paths relative to it, with their directory in each hierarchy."""
    found: dict[str, list[str]] = {}
    for mount_point in sorted(set(mount_points)):
        top = os.path.join(mount_point, parent.strip("/"))
        for name in listdir(top):
            first = os.path.join(top, name)
            if not os.path.isdir(first):
                continue
            found.setdefault(name, []).append(first)
            for sub in listdir(first):
                second = os.path.join(first, sub)
                if os.path.isdir(second):
                    found.setdefault(f"{name}/{sub}", []).append(second)
    return found


def _known_cgroups(containers: Iterable[Container], sandboxes: Iterable[SandboxRecord]) -> tuple[set[str], set[str]]:
    """The cgroups records name: each container's cgroups_path; each pod's cgroup parent."""
    of_containers: set[str] = set()
    of_pods: set[str] = set()
    for c in containers:
        path = c.config.get("cgroups_path")
        if isinstance(path, str) and path.startswith("/"):
            of_containers.add(path.rstrip("/"))
    for s in sandboxes:
        for path in (s.status.get("cgroup_parent"), s.config.get("cgroup_parent")):
            if isinstance(path, str) and path.startswith("/"):
                of_pods.add(path.rstrip("/"))
    return of_containers, of_pods


def _orphan_cgroups(parent: str, cgroups: Mapping[str, list[str]],
                    known: tuple[set[str], set[str]]) -> list[tuple[str, list[str]]]:
    """The top-most cgroups below ``parent`` that no record names nor holds one
    that does, among those named as hawser names them.  A container's own
    sub-cgroups are its business."""
    base = "/" + parent.strip("/")
    of_containers, of_pods = known
    every = of_containers | of_pods

    def claimed(cgroup: str) -> bool:
        return cgroup in every or any(k.startswith(cgroup + "/") for k in every)

    found = []
    for rel in sorted(cgroups):
        cgroup = f"{base}/{rel}"
        if claimed(cgroup):
            continue
        if "/" in rel:
            head = f"{base}/{rel.split('/', 1)[0]}"
            if head in of_containers or not claimed(head):
                continue  # a container's own sub-cgroup, or inside a cgroup reported whole
        if ID.match(rel.rsplit("/", 1)[-1]) or POD_CGROUP.match(rel.rsplit("/", 1)[-1]):
            found.append((cgroup, cgroups[rel]))
    return found


# --- reports and repairs -----------------------------------------------------------------------


class _Orphans:
    def __init__(self, ctx: Context, paths: _Paths) -> None:
        self.ctx = ctx
        self.paths = paths

    def _has_container(self, id_: str) -> bool:
        md = self.ctx.metadata
        for ns in md.namespaces.list():
            try:
                md.containers.get(id_, namespace=ns.name)
                return True
            except NotFound:
                continue
        return False

    def _has_pod(self, id_: str) -> bool:
        md = self.ctx.metadata
        for ns in md.namespaces.list():
            try:
                md.sandboxes.get(id_, namespace=ns.name)
                return True
            except NotFound:
                continue
        return False

    def _container_repair(self, id_: str, step: Callable[[], None]) -> Callable[[], None]:
        """``step`` under the container's lock, once no record has appeared."""
        def repair() -> None:
            with self.ctx.container_lock(id_):
                if self._has_container(id_):
                    raise Resolved("its container exists now: kept")
                step()
        return repair

    def _pod_repair(self, id_: str, step: Callable[[], None]) -> Callable[[], None]:
        def repair() -> None:
            if self._has_pod(id_):
                raise Resolved("its pod exists now: kept")
            step()
        return repair

    def runc(self, id_: str) -> None:
        host, root = self.ctx.host, self.paths.runc
        if not os.path.isdir(os.path.join(root, id_)):
            return
        status = host.runc_status(root, id_) or "unknown"

        def step() -> None:
            host.runc_delete(root, id_)
            if os.path.isdir(os.path.join(root, id_)):
                raise NotRepaired("runc delete --force left its state directory")

        self.ctx.report(RUNC_ORPHAN, id_, f"runc knows container {id_[:12]} ({status}) but hawser has no record "
                        "of it (repair: runc delete --force, which kills its processes)",
                        repair=self._container_repair(id_, step))

    def conmon(self, id_: str, process: Process) -> None:
        host = self.ctx.host
        if not host.alive(process):
            return

        def step() -> None:
            # Once its container is gone (runc delete, above), conmon records the
            # exit and ends by itself; only one that does not is killed.
            if not host.wait_exit(process, CONMON_EXIT_WAIT):
                host.kill(process)

        self.ctx.report(CONMON_ORPHAN, str(process.pid),
                        f"conmon of container {id_[:12]}, which has no record (repair kills it)",
                        repair=self._container_repair(id_, step))

    def mount(self, mount: MountPoint, why: str) -> None:
        host = self.ctx.host
        owner = _owner(mount.path, self.paths)

        def step() -> None:
            if not any(m.path == mount.path for m in host.mounts()):
                raise Resolved("unmounted meanwhile")
            host.unmount(mount.path)

        repair = step
        if owner is not None and owner[0] == "container":
            repair = self._container_repair(owner[1], step)
        elif owner is not None:
            repair = self._pod_repair(owner[1], step)
        self.ctx.report(MOUNT_ORPHAN, mount.path, f"a {mount.fstype} mount: {why} (repair unmounts it)",
                        repair=repair)

    def pins(self, pin_dir: str, pins: list[MountPoint]) -> None:
        host = self.ctx.host
        id_ = os.path.basename(os.path.dirname(pin_dir))
        kinds = sorted({os.path.basename(m.path) for m in pins if m.path != pin_dir})

        def step() -> None:
            host.remove_pin_dir(pin_dir)

        self.ctx.report(NETNS_ORPHAN, pin_dir,
                        f"pinned {', '.join(kinds) or 'namespace'} namespace(s) of pod {id_[:12]}, which has no record "
                        "(repair unpins them)", repair=self._pod_repair(id_, step))

    def _still_mounted_below(self, path: str) -> list[str]:
        return sorted((m.path for m in self.ctx.host.mounts() if m.path == path or _under(m.path, path) is not None),
                      key=lambda p: -p.count("/"))

    def bundle(self, id_: str) -> None:
        path = os.path.join(self.paths.bundles, id_)
        if not os.path.isdir(path):
            return

        def step() -> None:
            for target in self._still_mounted_below(path):
                self.ctx.host.unmount(target)
            if self._still_mounted_below(path):
                raise NotRepaired("something is still mounted in it")
            shutil.rmtree(path)

        self.ctx.report(BUNDLE_ORPHAN, path, f"the bundle of container {id_[:12]}, which has no record "
                        "(repair removes it)", repair=self._container_repair(id_, step))

    def pod_dir(self, id_: str) -> None:
        path = os.path.join(self.paths.pods, id_)
        if not os.path.isdir(path):
            return

        def step() -> None:
            pin_dir = os.path.join(path, "ns")
            if os.path.lexists(pin_dir):
                self.ctx.host.remove_pin_dir(pin_dir)
            for target in self._still_mounted_below(path):
                self.ctx.host.unmount(target)
            if self._still_mounted_below(path):
                raise NotRepaired("something is still mounted in it")
            shutil.rmtree(path)

        self.ctx.report(POD_DIR_ORPHAN, path, f"the directory of pod {id_[:12]}, which has no record "
                        "(repair removes it)", repair=self._pod_repair(id_, step))

    def file(self, kind: str, id_: str, path: str, what: str, *, info: bool = False) -> None:
        if not os.path.lexists(path):
            return

        def step() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

        report = self.ctx.info if info else self.ctx.report
        report(kind, path, f"{what} of container {id_[:12]}, which has no record (repair removes it)",
               repair=self._container_repair(id_, step))

    def cgroup(self, layout: CgroupLayout, cgroup: str, directories: list[str]) -> None:
        from hawser.host import cgroup_pids, remove_cgroup

        if not any(os.path.isdir(d) for d in directories):
            return
        id_ = cgroup.rsplit("/", 1)[-1]

        def step() -> None:
            remove_cgroup(layout, cgroup, timeout=CGROUP_REMOVE_TIMEOUT)

        if ID.match(id_):
            self.ctx.report(CGROUP_ORPHAN, cgroup,
                            f"the cgroup of container {id_[:12]}, which has no record, in {len(directories)} "
                            "hierarchies (repair removes it if it is empty; its processes are left alone)",
                            repair=self._container_repair(id_, step))
            return
        # A pod's cgroup: RemovePodSandbox leaves it behind, empty, once runc has
        # removed its containers' cgroups. Only one that still holds something is a problem.
        busy = any(os.path.isdir(os.path.join(d, sub)) for d in directories for sub in listdir(d))
        try:
            busy = busy or bool(cgroup_pids(layout, cgroup))
        except NotFound:
            return
        report = self.ctx.report if busy else self.ctx.info
        what = "holding cgroups or processes" if busy else "empty (RemovePodSandbox leaves it behind)"
        report(CGROUP_ORPHAN, cgroup, f"the cgroup of a pod that has no record, {what} "
               "(repair removes it if it is empty; its processes are left alone)", repair=step)


__all__ = ["check_runtime"]
