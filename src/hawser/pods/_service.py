"""The pod lifecycle: run, stop, remove and recover pod sandboxes.

No pause image and no infra container: a pod is its record in SQLite plus
what setup made under ``state/sandboxes/<id>``:

- ``ns/{net,ipc,uts}``: namespaces pinned by bind mounts (``host.pin_namespaces``);
- ``resolv.conf`` and ``hostname``: bound into every container of the pod;
- ``shm/``: the pod's /dev/shm, a tmpfs shared by its containers (as its IPC is);
- with a shared pid namespace, a catatonit init holding it (``host.start_pid_namespace``);
- its network, through CNI (``network.PodNetworks``).

The record is written first (state "notready"), every step pushes its undo,
and only a complete setup marks it "ready": a failed run undoes everything,
and one interrupted by a crash leaves a not-ready pod that stop and remove
finish off (both are idempotent and tolerate any half-made state).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from hawser._dataclass import replace
from hawser._failpoints import failpoint
from hawser._logging import get_logger
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound, ResourceExhausted
from hawser.metadata import SandboxRecord
from hawser.pods._host import (
    apply_sysctls,
    lost_namespaces,
    mount_shm,
    remove_files,
    remove_pod_cgroup,
    resolv_conf,
    unmount_shm,
    write_file,
)
from hawser.pods._types import (
    LABEL_SANDBOX_ID,
    NODE,
    POD,
    REASON_KEY,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
    PodSpec,
    RunBlocking,
    Sandbox,
)

if TYPE_CHECKING:
    from hawser.metadata import SandboxRecords
    from hawser.network import PodNetworks
    from hawser.runtime import ContainerManager, Resources
    from hawser.store import Store

log = get_logger("hawser.pods")

P = ParamSpec("P")
T = TypeVar("T")


class PodService:
    """Pod sandbox lifecycle. Methods are coroutines; blocking steps go
    through ``blocking``. Concurrent calls on one pod are serialised."""

    def __init__(self, *, records: SandboxRecords, containers: ContainerManager, network: PodNetworks,
                 blocking: RunBlocking, state_dir: str, cgroup_parent: str,
                 make_room: Callable[[], None] = lambda: None) -> None:
        """``make_room``: called on a full disk before a stop or a removal is
        recorded (the store gives its reserve back)."""
        self.records = records
        self._make_room = make_room
        self.containers = containers
        self.network = network
        self.blocking = blocking
        self.root = os.path.join(state_dir, "sandboxes")
        self.default_cgroup_parent = cgroup_parent.rstrip("/") or "/hawser"
        self._locks: dict[str, asyncio.Lock] = {}
        # Called (in the calling thread) with an action ("ready", "notready",
        # "removed") and the pod's record after each change; must not block or raise.
        self.observers: list[Callable[[str, SandboxRecord], None]] = []
        # What the last ``recover`` found: {"pod": {outcome: n}, "container": {state: n}}.
        self.recovered: dict[str, dict[str, int]] = {}

    @classmethod
    def of(cls, store: Store, *, containers: ContainerManager, network: PodNetworks,
           blocking: RunBlocking) -> PodService:
        """The pod service of ``store``'s namespace, state dir and cgroup parent."""
        return cls(records=store.metadata.sandboxes, containers=containers, network=network, blocking=blocking,
                   state_dir=store.config.state, cgroup_parent=store.config.runtime.cgroup_parent,
                   make_room=store.make_room)

    def _roomy(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``write`` (a record change that ends something: a stop, a removal),
        again after ``make_room`` if the disk is full: what frees resources must
        not be refused for want of them. Blocking."""
        try:
            return write(*args, **kwargs)
        except ResourceExhausted:
            self._make_room()
            return write(*args, **kwargs)

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def directory(self, id_: str) -> str:
        return os.path.join(self.root, id_)

    # --- lookups ---------------------------------------------------------------

    def get(self, sandbox_id: str) -> Sandbox:
        """The sandbox with this id or unique id prefix, as the host has it (see
        ``_checked``). NotFound otherwise. Blocking."""
        return _view(self._checked(self._record(sandbox_id)))

    def _record(self, text: str) -> SandboxRecord:
        if not text:
            raise InvalidArgument("no pod sandbox id given")
        try:
            return self.records.get(text)
        except NotFound:
            pass
        found = [r for r in self.records.list() if r.id.startswith(text)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"pod sandbox id prefix {text!r} is ambiguous")
        raise NotFound(f"pod sandbox {text} not found")

    def all(self) -> list[Sandbox]:
        """Every sandbox, oldest first, as the host has it. Blocking."""
        return [_view(self._checked(r)) for r in self.records.list()]

    def _checked(self, record: SandboxRecord) -> SandboxRecord:
        """A ready pod's state checked against the host: one that lost a
        namespace (its pid namespace init died, a pin was unmounted, a reboot
        emptied /run) is not ready, and the record says why, so that kubelet
        recreates it instead of failing every CreateContainer in it."""
        if record.state != SANDBOX_READY:
            return record
        lost = lost_namespaces(record)
        if not lost:
            return record
        reason = f"lost its {', '.join(lost)} namespace{'s' if len(lost) > 1 else ''}"
        log.warning("pod sandbox is not ready: " + reason, extra={"id": record.id, "lost": lost})
        status = {**record.status, REASON_KEY: reason}
        try:
            changed = self.records.update(record.id, state=SANDBOX_NOTREADY, status=status)
            self._notify("notready", changed)
            return changed
        except NotFound:
            raise
        except HawserError as exc:  # a full disk: report the truth anyway; the next read records it
            log.warning("cannot record a pod sandbox not ready", extra={"id": record.id, "error": str(exc)})
            return replace(record, state=SANDBOX_NOTREADY, status=status)

    # --- run ---------------------------------------------------------------------

    async def run(self, spec: PodSpec) -> str:
        """Create and start a pod sandbox; its id.

        The metadata (name, namespace, uid, attempt) is reserved while the
        pod's record lives, as containerd reserves it.  A retry of the same
        request (kubelet's, after a timeout) returns the ready pod the first
        call made, once that call is done; any other request for a name whose
        pod was set up (it is ready with another config, or stopped) is
        AlreadyExists.  Only a pod that was never set up, left half-made when
        hawserd died inside this call, is finished off and made again.
        FailedPrecondition for a log directory that is a file (or under one).
        On failure everything made is undone."""
        async with self._lock(spec.key):
            config = _config_json(spec)
            existing = await self.blocking(self.records.find, spec.key)
            if existing is not None:
                existing = await self.blocking(self._checked, existing)  # ready only if its namespaces live
                if _was_set_up(existing):
                    if existing.state == SANDBOX_READY and _same_config(existing, config):
                        return str(existing.id)
                    raise _reserved(spec.key, existing)
                # Never set up: this hawserd died in RunPodSandbox (a failed run
                # deletes its record), and CreateContainer refused it while not
                # ready, so there is nothing in it to keep.
                await self._remove(existing)
            await self.blocking(_check_log_directory, spec.log_directory)
            id_ = os.urandom(32).hex()
            record = SandboxRecord(namespace=self.records.namespace, id=id_, name=spec.key, config=config,
                                   labels=dict(spec.labels), state=SANDBOX_NOTREADY, status={},
                                   created_at=time.time())
            await self.blocking(self.records.create, record)
            undo: list[Callable[[], Awaitable[None]]] = []
            try:
                status = await self._setup(id_, spec, undo)
                # Ready and set up in one write: a pod stopped later still reads set up.
                await self.blocking(self.records.update, id_, state=SANDBOX_READY,
                                    status={**status, _SET_UP_AT: time.time()})
            except BaseException as exc:
                log.warning("RunPodSandbox failed, rolling back", extra={"pod": spec.key, "id": id_,
                                                                         "error": str(exc)})
                for step in reversed(undo):
                    try:
                        await step()
                    except Exception as undo_exc:  # keep undoing; the first error is the one to report
                        log.error("rollback step failed", extra={"id": id_, "error": str(undo_exc)})
                with contextlib.suppress(Exception):
                    await self.blocking(self.records.delete, id_)
                raise
            log.info("pod sandbox ready", extra={"pod": spec.key, "id": id_, "ips": status.get("ips")})
            self._notify("ready", replace(record, state=SANDBOX_READY, status=status))
            return id_

    async def _setup(self, id_: str, spec: PodSpec, undo: list[Callable[[], Awaitable[None]]]) -> dict[str, Any]:
        from hawser.host import pin_namespaces, remove_pin_dir

        directory = self.directory(id_)
        status: dict[str, Any] = {"cgroup_parent": spec.cgroup_parent
                                  or f"{self.default_cgroup_parent}/pod-{id_[:12]}"}

        def save() -> Awaitable[Any]:
            # Each step's result is recorded as soon as it exists, so a crash leaves
            # enough on disk for Stop/Remove to undo it.
            return self.blocking(self.records.update, id_, status=dict(status))

        await self.blocking(os.makedirs, directory, 0o711, exist_ok=True)

        async def remove_dir() -> None:
            await self.blocking(shutil.rmtree, directory, True)

        undo.append(remove_dir)

        kinds = []
        if spec.network_mode != NODE:
            kinds += ["net", "uts"]
        if spec.ipc_mode != NODE:
            kinds.append("ipc")
        hostname = spec.hostname or (spec.name[:63] if spec.network_mode != NODE else os.uname().nodename)
        ns_dir = os.path.join(directory, "ns")
        if spec.uid_map is not None or kinds:
            named = hostname if "uts" in kinds else None
            if spec.uid_map is not None:
                from hawser.host import pin_user_namespace

                # The user namespace owns the pod's others, so its containers' root may mount sysfs and mqueue.
                pins = await self.blocking(pin_user_namespace, ns_dir, spec.uid_map, spec.gid_map, kinds,
                                           hostname=named)
            else:
                pins = await self.blocking(pin_namespaces, ns_dir, kinds, hostname=named)

            async def unpin() -> None:
                await self.blocking(remove_pin_dir, ns_dir)

            undo.append(unpin)
            status.update({kind: path for kind, path in pins.items()})
            await save()
            failpoint("sandbox.run.after-namespaces")

        if spec.ipc_mode != NODE:
            shm = os.path.join(directory, "shm")
            await self.blocking(mount_shm, shm)

            async def undo_shm() -> None:
                await self.blocking(unmount_shm, shm)

            undo.append(undo_shm)
            status["shm"] = shm

        if spec.pid_mode == POD:
            from hawser.host import pin_namespace_of, start_pid_namespace, stop_pid_namespace

            holder, init = await self.blocking(start_pid_namespace, id_, userns=status.get("user"))

            async def stop_init() -> None:
                await self.blocking(stop_pid_namespace, holder, id_)

            undo.append(stop_init)
            status.update({"infra_holder": holder, "infra_pid": init})
            await save()

            async def unpin_pid() -> None:
                await self.blocking(remove_pin_dir, ns_dir)

            undo.append(unpin_pid)
            # Pinned, not /proc/<init>/ns/pid: once that pid is reused the path names another process's.
            status["pid"] = await self.blocking(pin_namespace_of, init, "pid", os.path.join(ns_dir, "pid"))
            await save()

        status["hostname"] = hostname
        status["hostname_file"] = await self.blocking(write_file, os.path.join(directory, "hostname"),
                                                      hostname + "\n")
        status["resolv_conf"] = await self.blocking(write_file, os.path.join(directory, "resolv.conf"),
                                                    resolv_conf(spec))
        if spec.sysctls:
            await self.blocking(apply_sysctls, spec.sysctls, status)

        if spec.network_mode != NODE:
            from hawser.network import DNSConfig, PodNetworkRequest, PortMapping

            request = PodNetworkRequest(
                pod_id=id_, netns=status["net"], name=spec.name, namespace=spec.namespace, uid=spec.uid,
                port_mappings=tuple(PortMapping(container_port=p.container_port, host_port=p.host_port,
                                                protocol=p.protocol, host_ip=p.host_ip) for p in spec.ports),
                dns=DNSConfig(servers=spec.dns_servers, searches=spec.dns_searches, options=spec.dns_options)
                if spec.has_dns else None,
                annotations=tuple(sorted(spec.annotations.items())), cgroup_parent=status["cgroup_parent"])
            # The undo goes first: a cancelled or failed ADD may have done half its work.

            async def teardown() -> None:
                await self.network.teardown(id_, status.get("net"))

            undo.append(teardown)
            attached = await self.network.setup(request)
            status["ips"] = list(attached.ips)
        return status

    # --- stop and remove -------------------------------------------------------------

    async def stop(self, sandbox_id: str) -> None:
        """Stop every container of the pod, tear its network down, end its pid
        namespace init; the pod becomes not ready. Idempotent; works on a
        half-made pod. NotFound for an unknown id."""
        record = await self.blocking(self._record, sandbox_id)
        async with self._lock(record.name):
            await self._stop(record)

    async def _stop(self, record: SandboxRecord) -> None:
        id_ = record.id
        status = dict(record.status)
        errors: list[str] = []
        for container in await self.blocking(self._containers_of, id_):
            try:
                await self.blocking(self.containers.stop, container, 0)
            except NotFound:
                pass
            except HawserError as exc:
                errors.append(f"stop container {container[:12]}: {exc}")
        if record.state != SANDBOX_NOTREADY:
            # Before the teardown: a pod whose network is half gone (a crash in
            # between) must not read ready. A retried Stop does it all again.
            await self.blocking(self._roomy, self.records.update, id_, state=SANDBOX_NOTREADY)
            self._notify("notready", replace(record, state=SANDBOX_NOTREADY))
        try:
            await self.network.teardown(id_, status.get("net"))
        except HawserError as exc:
            errors.append(f"network teardown: {exc}")
        if status.get("infra_holder"):
            from hawser.host import stop_pid_namespace

            await self.blocking(stop_pid_namespace, int(status["infra_holder"]), id_)
        if errors:
            # Not ready already; a retry finishes what failed.
            raise FailedPrecondition(f"stopping pod sandbox {id_[:12]}: " + "; ".join(errors))

    async def remove(self, sandbox_id: str) -> None:
        """Stop the pod if needed, remove its containers, namespaces, files and
        record. Idempotent: an unknown id is not an error (CRI)."""
        try:
            record = await self.blocking(self._record, sandbox_id)
        except NotFound:
            return
        lock = self._lock(record.name)
        async with lock:
            await self._remove(record)
        if not lock.locked() and self._locks.get(record.name) is lock:
            del self._locks[record.name]  # one lock per live pod, not per pod ever made

    async def _remove(self, record: SandboxRecord) -> None:
        await self._stop(record)
        for container in await self.blocking(self._containers_of, record.id):
            with contextlib.suppress(NotFound):
                await self.blocking(self.containers.remove, container, force=True)
        await self.blocking(remove_files, self.directory(record.id))
        own_cgroup = f"{self.default_cgroup_parent}/pod-{record.id[:12]}"
        if record.status.get("cgroup_parent") == own_cgroup:  # one kubelet gave is kubelet's to remove
            await self.blocking(remove_pod_cgroup, own_cgroup)
        failpoint("sandbox.remove.before-record-delete")
        await self.blocking(self._roomy, self.records.delete, record.id)
        self._notify("removed", record)

    def _notify(self, action: str, record: SandboxRecord) -> None:
        for observer in list(self.observers):
            try:
                observer(action, record)
            except Exception:
                log.exception("pod observer failed")

    def _containers_of(self, sandbox_id: str) -> list[str]:
        return [c.id for c in self.containers.records.list()
                if c.labels.get(LABEL_SANDBOX_ID) == sandbox_id]

    # --- resources (kubelet's in-place resize) -----------------------------------------

    async def update_resources(self, sandbox_id: str, *, resources: Resources, overhead: Resources) -> None:
        """Keep the pod's new resources and overhead in its record and, when
        its cgroup is hawser's own, set that cgroup's limits (see
        ``pods._resources``).  NotFound for an unknown pod, FailedPrecondition
        for one that is not ready, InvalidArgument for a bad value. Idempotent."""
        from hawser.pods._resources import check_pod_resources, update_pod_resources

        check_pod_resources(resources, "resources")
        check_pod_resources(overhead, "overhead")
        record = await self.blocking(self._record, sandbox_id)
        async with self._lock(record.name):
            # Read again under the lock: a stop may have come first.
            record = await self.blocking(self._checked, await self.blocking(self.records.get, record.id))
            await self.blocking(update_pod_resources, self.records, record, resources=resources, overhead=overhead,
                                own_cgroup=f"{self.default_cgroup_parent}/pod-{record.id[:12]}")

    # --- recovery ----------------------------------------------------------------------

    async def recover(self) -> None:
        """At daemon start: a ready pod whose namespaces did not survive (a
        reboot empties /run) or whose pid namespace init died is not ready.
        ``recovered`` then counts the pods by outcome ("ready"; "lost": ready
        before, not now; "notready": so already) and the containers by the
        state their files show (no runc: as ``hawser_containers`` counts them)."""
        before = {r.id: r.state for r in await self.blocking(self.records.list)}
        pods: dict[str, int] = {}
        for sandbox in await self.blocking(self.all):
            outcome = ("ready" if sandbox.state == SANDBOX_READY else
                       "lost" if before.get(sandbox.id) == SANDBOX_READY else "notready")
            pods[outcome] = pods.get(outcome, 0) + 1
        self.recovered = {"pod": pods, "container": await self.blocking(self._container_states)}

    def _container_states(self) -> dict[str, int]:
        from hawser.runtime import CREATED, EXITED, RUNNING, UNKNOWN

        found: dict[str, int] = {}
        for record in self.containers.records.list():
            bundle = self.containers.bundle(record.id)
            state = (EXITED if os.path.exists(os.path.join(self.containers.exits_dir, record.id)) else
                     UNKNOWN if not os.path.isdir(bundle) else
                     RUNNING if os.path.exists(os.path.join(bundle, "started")) else CREATED)
            found[state] = found.get(state, 0) + 1
        return found


# --- the record and its view ---------------------------------------------------------


def _view(record: SandboxRecord) -> Sandbox:
    config = record.config
    meta = config.get("metadata", {})
    status = record.status
    return Sandbox(
        id=record.id, name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")), attempt=int(meta.get("attempt", 0)), state=record.state,
        created_at=record.created_at, labels=dict(record.labels),
        annotations=dict(config.get("annotations", {})), runtime_handler=str(config.get("runtime_handler", "")),
        runtime=str(config.get("runtime", "")),
        hostname=str(status.get("hostname", "")), log_directory=str(config.get("log_directory", "")),
        cgroup_parent=str(status.get("cgroup_parent", "")), netns=status.get("net"), ipc=status.get("ipc"),
        uts=status.get("uts"), pid=status.get("pid"), host_pid=config.get("pid_mode") == NODE,
        userns=status.get("user"), uid_map=_id_map(config.get("uid_map")), gid_map=_id_map(config.get("gid_map")),
        resolv_conf=status.get("resolv_conf"), hostname_file=status.get("hostname_file"),
        shm=status.get("shm"), ips=tuple(status.get("ips", ())), privileged=bool(config.get("privileged")),
        sysctls=dict(config.get("sysctls", {})), config=config, reason=str(status.get(REASON_KEY, "")),
    )


def _id_map(value: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(a), int(b), int(c)) for a, b, c in value or ())


def _config_json(spec: PodSpec) -> dict[str, Any]:
    return {
        "metadata": {"name": spec.name, "namespace": spec.namespace, "uid": spec.uid, "attempt": spec.attempt},
        "hostname": spec.hostname, "log_directory": spec.log_directory, "annotations": dict(spec.annotations),
        "runtime_handler": spec.runtime_handler, "runtime": spec.runtime,
        "network_mode": spec.network_mode, "pid_mode": spec.pid_mode,
        "ipc_mode": spec.ipc_mode, "privileged": spec.privileged, "sysctls": dict(spec.sysctls),
        "cgroup_parent": spec.cgroup_parent,
        **({"uid_map": [list(r) for r in spec.uid_map], "gid_map": [list(r) for r in spec.gid_map]}
           if spec.uid_map is not None else {}),
        "port_mappings": [{"container_port": p.container_port, "host_port": p.host_port, "protocol": p.protocol,
                           "host_ip": p.host_ip} for p in spec.ports],
        "request": dict(spec.raw),
    }


# --- RunPodSandbox's reservation of a pod's name ---------------------------------------

# The key in a record's status that says the pod's setup completed (its value:
# when).  Written with the state "ready"; stop keeps it, so a stopped pod is told
# apart from one that never was ready.
_SET_UP_AT = "set_up_at"


def _was_set_up(record: SandboxRecord) -> bool:
    # A ready record was set up with or without the key (one written before the key was).
    return record.state == SANDBOX_READY or _SET_UP_AT in record.status


def _same_config(record: SandboxRecord, config: dict[str, Any]) -> bool:
    """Whether ``config`` (a new request's ``_config_json``) is what ``record``
    was made from.  "Same" is the whole stored config equal, as JSON: the
    PodSandboxConfig as sent (metadata, hostname, log directory, DNS, ports,
    labels, annotations, linux...) and the runtime handler.  kubelet's retry
    after a timeout sends the very same request, so any difference is another
    pod that wants a name already taken, not a retry."""
    import json

    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    return canonical(record.config) == canonical(config)


def _reserved(key: str, record: SandboxRecord) -> HawserError:
    # containerd's answer: the name is its pod's until RemovePodSandbox.
    from hawser.errors import AlreadyExists

    why = "runs with another config" if record.state == SANDBOX_READY else "is stopped"
    return AlreadyExists(f'pod sandbox name "{key}" is reserved for {record.id}',
                         hint=f"pod sandbox {record.id[:12]} {why}: remove it first, or run the next attempt")


def _check_log_directory(path: str) -> None:
    """FailedPrecondition if ``path`` cannot be a directory: it, or what it is
    under, is something else (a file).  kubelet makes the directory before
    RunPodSandbox; CreateContainer makes it if it is missing.  Blocking."""
    if not path:
        return
    probe = path
    while not os.path.lexists(probe):  # "/" exists: the loop ends
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        where = "is" if probe == path else f"is under {probe}, which is"
        raise FailedPrecondition(f"log directory {path} {where} not a directory",
                                 hint="remove what is in the way, or give the pod another log_directory")
