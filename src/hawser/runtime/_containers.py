"""Containers: create, start, stop, kill, exec, remove, and their state.

No hawser process stays alive for a container: conmon is its parent and
monitor.  What hawser knows lives in three places, each written before the
next step can leave something behind:

- the metadata record (SQLite): written first, so a container can never
  exist without hawser knowing of it; it pins the container's snapshot for GC;
- the bundle under ``state/containers/<id>`` (config.json, pid files, the
  rootfs mount point, a ``started`` stamp, conmon's ``oom`` marker);
- runc's own state and conmon's exit file ``state/exits/<id>``.

Any command rebuilds the picture from those (``status``); every removal step
is idempotent, so ``rm -f`` finishes whatever a killed command left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from hawser._dataclass import replace
from hawser._failpoints import failpoint
from hawser._logging import get_logger
from hawser.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    HawserError,
    InvalidArgument,
    NotFound,
)
from hawser.host import FileLock, kill_process
from hawser.metadata import Container
from hawser.runtime._conmon import ConmonPaths, ConmonSession, ConmonWatch, conmon_argv
from hawser.runtime._files import (
    backoff,
    inode,
    read_float,
    read_int,
    remove_link_or_tree,
    unlink,
    write_json,
    write_text,
)
from hawser.runtime._logs import LogEntry, follow_log, log_size, read_log
from hawser.runtime._options import ContainerOptions, HostLimits, Resources
from hawser.runtime._runc import Runc, RuntimeHandler, runtime_handlers
from hawser.runtime._spec import build_spec, named_stop_signal
from hawser.runtime._types import (
    CREATED,
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_EXEC_EXITED,
    EVENT_EXEC_STARTED,
    EVENT_STARTED,
    EVENT_STOPPED,
    EXITED,
    PAUSED,
    RUNNING,
    UNKNOWN,
    ContainerInfo,
    ContainerStatus,
    ExecResult,
)
from hawser.runtime._user import find_executable, resolve_in_root
from hawser.snapshots import mount_all, unmount_all

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.config import Config
    from hawser.host import CgroupLayout
    from hawser.metadata import ContainerRecords
    from hawser.runtime._networking import ContainerNetworking, NetworkJoin, NetworkRequest
    from hawser.runtime._types import ImageResolver
    from hawser.snapshots import Snapshotter
    from hawser.store import Store

log = get_logger(__name__)

# Long enough for the CRI's names: <container>_<pod>_<namespace>_<uid>_<attempt>.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,511}$")
CONMON_EXIT_TIMEOUT = 10.0
# How long a status read waits for conmon to write the exit file of a container
# runc already reports stopped (conmon writes it right after reaping).
EXIT_RECORD_WAIT = 1.0
# How long the exit of a container that ended at once waits for its start to be told (_after_start_told).
START_TOLD_WAIT = 5.0
KILL_WAIT = 10.0
EXEC_CONMON_EXIT_GRACE = 5.0  # seconds an exec's conmon may take to exit after reporting the status

# How long reopen_log waits for conmon to open the new log file.
REOPEN_LOG_TIMEOUT = 5.0
# conmon's control fifo message that reopens the log (conmon's REOPEN_LOGS_EVENT).
_CONMON_REOPEN_LOGS = 2


class _Undo:
    """Rollback as a stack: each acquired resource pushes its undo step."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def run(self) -> None:
        while self._steps:
            step = self._steps.pop()
            try:
                step()
            except Exception as exc:
                log.warning("undoing a failed create: %s", exc)


# An EVENT_* kind, the record, and details: an exit's "exitCode" and
# "reason"; an exec's "execID", "command" and (when it exited) "exitCode".
Observer = Callable[[str, Container, Mapping[str, str]], None]


def exit_details(status: ContainerStatus) -> dict[str, str]:
    """What observers hear of an exit: its code (empty when unknown) and reason."""
    return {"exitCode": "" if status.exit_code is None else str(status.exit_code), "reason": status.reason}


class ContainerManager:
    """Containers of one store (root, state) and namespace.

    ``observers`` are called (in the calling thread) with an ``EVENT_*`` kind
    and the container's record after each change this object makes; they must
    not block or raise.  The CRI's container events are produced this way.

    Each container runs with one of the configured runtime handlers
    (``[runtimes.NAME]``: binary, root, flags), named in its record's config
    under ``RUNTIME_HANDLER``; ``runc`` is the default handler's runtime."""

    RUNTIME_HANDLER = "runtime_handler"
    """The key of a record's config that names its runtime handler (``create``
    takes it from ``extra_config``; a record without it has the default one)."""

    def __init__(self, *, config: Config, records: ContainerRecords, snapshotter: Snapshotter,
                 images: ImageResolver, make_room: Callable[[], None] = lambda: None,
                 host: HostLimits | None = None) -> None:
        """``records``: the containers store of the namespace to work in;
        ``images``: where containers are made from; ``make_room``: called on a
        full disk before a removal or an undo (the store gives its reserve back)."""
        self.config = config
        self.records = records
        self.namespace = records.namespace
        self.snapshotter = snapshotter
        self.images = images
        self._make_room = make_room
        rc = self.config.runtime
        state = self.config.state
        self.containers_dir = os.path.join(state, "containers")
        self.exits_dir = os.path.join(state, "exits")
        self.sockets_dir = os.path.join(state, "attach")
        self.logs_dir = os.path.join(self.config.root, "containers")
        self.locks_dir = os.path.join(state, "locks")
        for d in (self.containers_dir, self.exits_dir, self.sockets_dir, self.logs_dir, self.locks_dir):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self.handlers: dict[str, RuntimeHandler] = runtime_handlers(self.config)
        self.default_handler = self.handlers[rc.default_runtime]
        self.runc = self.default_handler.runc
        self._host = host
        self._layout: CgroupLayout | None = None
        self.observers: list[Observer] = []
        # Attaches the containers ``create`` is given a NetworkRequest for (the CLI's); removals detach them.
        self.networking: ContainerNetworking | None = None

    @classmethod
    def of(cls, store: Store, images: ImageResolver, *, host: HostLimits | None = None) -> ContainerManager:
        """The containers of ``store``'s namespace."""
        return cls(config=store.config, records=store.metadata.containers, snapshotter=store.snapshotter,
                   images=images, make_room=store.make_room, host=host)

    def _notify(self, kind: str, record: Container, details: Mapping[str, str] | None = None) -> None:
        for observer in list(self.observers):
            try:
                observer(kind, record, details or {})
            except Exception:
                log.exception("container observer failed")

    @property
    def host(self) -> HostLimits:
        if self._host is None:
            self._host = HostLimits.current()
        return self._host

    # --- paths ----------------------------------------------------------------

    def bundle(self, id_: str) -> str:
        return os.path.join(self.containers_dir, id_)

    def _idmap_dir(self, id_: str) -> str:
        """Where a container in a user namespace has the idmapped copies of
        its bind mounts: outside its bundle, which is removed as a tree."""
        return os.path.join(self.config.state, "idmap", id_)

    def log_path(self, id_: str) -> str:
        """The default log file of a container (one created without ``log_path``)."""
        return os.path.join(self.logs_dir, id_, "container.log")

    def container_log_path(self, record: Container) -> str:
        """Where conmon writes this container's log: the path given at create, or the default."""
        return str(record.config.get("log_path") or self.log_path(record.id))

    def _exit_file(self, id_: str) -> str:
        return os.path.join(self.exits_dir, id_)

    def _lock(self, id_: str) -> FileLock:
        lock = FileLock(os.path.join(self.locks_dir, f"container-{id_}.lock"))
        lock.acquire()
        return lock

    @contextlib.contextmanager
    def _locked(self, id_: str) -> Iterator[FileLock]:
        lock = self._lock(id_)
        try:
            yield lock
        finally:
            lock.release()

    # --- runtime handlers -------------------------------------------------------

    def handler(self, name: str = "") -> RuntimeHandler:
        """The configured runtime handler ``name`` ("": the default one).
        NotFound naming the configured ones otherwise."""
        if not name:
            return self.default_handler
        try:
            return self.handlers[name]
        except KeyError:
            # containerd's words: no runtime for "x" is configured.
            raise NotFound(f"no runtime for {json.dumps(name)} is configured",
                           hint="configured runtime handlers: " + ", ".join(sorted(self.handlers))) from None

    def handler_of(self, record: Container) -> RuntimeHandler:
        """The runtime handler a container was made with.  FailedPrecondition
        when its handler is no longer configured (its runtime state is under
        that handler's root)."""
        # A record without a handler's name (a containerd container's, whose config
        # is the client's whole spec) is not decoded to learn that: see metadata's _Config.get.
        name = str(record.config.get(self.RUNTIME_HANDLER) or "")
        handler = self.handlers.get(name) if name else self.default_handler
        if handler is None:
            raise FailedPrecondition(f"container {record.name} runs with runtime handler {name!r}, which is not "
                                     "configured", hint=f"configure [runtimes.{name}] again to manage it")
        return handler

    def runc_for(self, record: Container) -> Runc:
        """The runtime (binary, root, flags) of a container's handler."""
        return self.handler_of(record).runc

    # --- lookup ---------------------------------------------------------------

    def lookup(self, text: str) -> Container:
        """A container by full id, name, or unique id prefix. NotFound otherwise;
        InvalidArgument if a prefix matches several."""
        # An exact id first, as Docker resolves it: one row, not a scan that loads every record
        # (containerd's Tasks start and kill by id, and a daemon with 100 containers paid ~1.5 MB
        # of records per call, memory the heap kept).
        if text:
            with contextlib.suppress(NotFound):
                return self.records.get(text)
        records = self.records.list()
        for r in records:
            if r.name == text or r.id == text:
                return r
        matches = [r for r in records if text and r.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InvalidArgument(f"container id prefix {text!r} matches {len(matches)} containers; give more of it")
        raise NotFound(f"no such container: {text}")

    def info(self, record: Container) -> ContainerInfo:
        return ContainerInfo(record=record, status=self.status(record), bundle=self.bundle(record.id),
                             log_path=self.container_log_path(record))

    def list(self, *, all_: bool = True) -> list[ContainerInfo]:
        infos = [self.info(r) for r in self.records.list()]
        return infos if all_ else [i for i in infos if i.status.state in (RUNNING, PAUSED)]

    def status(self, record: Container) -> ContainerStatus:
        id_ = record.id
        bundle = self.bundle(id_)
        started = read_float(os.path.join(bundle, "started"))
        exited = self._exited(id_, started)
        if exited is not None:
            self._sweep(record)
            self._exit_seen(record, exited)
            return exited
        try:
            runc = self.runc_for(record)
        except FailedPrecondition as exc:
            return ContainerStatus(UNKNOWN, started_at=started, reason=exc.message)
        state = runc.state(id_)
        if state is None:
            if not os.path.isdir(bundle):
                if "containerd" in record.config:
                    # Made through containerd's API (hawser.containerd._records) with no task
                    # (none yet, or it was deleted): a container without a process.
                    return ContainerStatus(CREATED, reason="no task")
                return ContainerStatus(UNKNOWN, reason="its runtime state is gone (a reboot?)")
            return ContainerStatus(UNKNOWN, started_at=started, reason="creation did not finish")
        if state.status in ("created", "creating"):
            return ContainerStatus(CREATED, pid=state.pid)
        if state.status == "running":
            return ContainerStatus(RUNNING, pid=state.pid, started_at=started)
        if state.status == "paused":
            return ContainerStatus(PAUSED, pid=state.pid, started_at=started)
        # runc says stopped and there is no exit file: conmon is recording the exit
        # right now (it reaps, then writes), or it died without doing so.
        with ConmonWatch(read_int(os.path.join(bundle, "conmon.pid"))) as conmon:
            conmon.wait(EXIT_RECORD_WAIT)
        exited = self._exited(id_, started)
        self._sweep(record)
        if exited is None:
            oom = os.path.exists(os.path.join(bundle, "oom"))
            exited = ContainerStatus(EXITED, started_at=started, oom_killed=oom, reason="exit status unknown")
        self._exit_seen(record, exited)
        return exited

    def _exit_seen(self, record: Container, status: ContainerStatus) -> None:
        # Observers hear of an exit once, from whichever process reads it first.
        bundle = self.bundle(record.id)
        try:
            os.close(os.open(os.path.join(bundle, "exit-seen"),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        except (FileExistsError, FileNotFoundError):  # heard already, or the bundle is gone
            return
        self._after_start_told(bundle, status)
        self._notify(EVENT_STOPPED, record, exit_details(status))

    @staticmethod
    def _after_start_told(bundle: str, status: ContainerStatus) -> None:
        """Wait (briefly) until the start of a container that exited at once
        has been told to the observers (``_start``): its exit can be read
        before ``runc start`` has returned.  A start long ago (one that
        crashed, a bundle older than the marker) is not waited for."""
        if status.started_at is None or time.time() - status.started_at > START_TOLD_WAIT:
            return
        marker = os.path.join(bundle, "start-told")
        deadline = time.monotonic() + START_TOLD_WAIT
        while not os.path.exists(marker) and time.monotonic() < deadline and os.path.isdir(bundle):
            time.sleep(0.002)

    def _sweep(self, record: Container) -> None:
        # With a pid namespace of its own the kernel kills the rest when the
        # main process (its init) dies: only a shared one (the pod's, the
        # host's) leaves processes behind.
        if (record.config.get("namespaces") or {}).get("pid"):
            from hawser.runtime._stats import cgroup_of
            from hawser.runtime._sweep import sweep

            sweep(self.bundle(record.id), cgroup_of(record), self._cgroup_layout)

    def _cgroup_layout(self) -> CgroupLayout:
        if self._layout is None:
            from hawser.host import CgroupLayout

            self._layout = CgroupLayout.detect()
        return self._layout

    def _exited(self, id_: str, started: float | None) -> ContainerStatus | None:
        """The status conmon's exit file records, if it exists."""
        exit_file = self._exit_file(id_)
        try:
            with open(exit_file, encoding="ascii") as f:
                text = f.read().strip()
            finished = os.stat(exit_file).st_mtime
        except FileNotFoundError:
            return None
        oom = os.path.exists(os.path.join(self.bundle(id_), "oom"))
        code = int(text) if text.lstrip("-").isdigit() else -1
        reason = "OOMKilled" if oom else ("Error" if code else "Completed")
        return ContainerStatus(EXITED, exit_code=code, started_at=started, finished_at=finished,
                               oom_killed=oom, reason=reason)

    # --- create / start -------------------------------------------------------

    def create(self, image: str, options: ContainerOptions, *, name: str | None = None,
               labels: Mapping[str, str] | None = None, log_path: str | None = None,
               cgroup_parent: str | None = None, extra_config: Mapping[str, Any] | None = None,
               exit_command: Sequence[str] = (), network: NetworkRequest | None = None) -> ContainerInfo:
        """Create a container from a stored image (it is not started).

        ``log_path``: where conmon writes the CRI-format log (an absolute path;
        its directory is created; the file is left alone by ``remove``: its
        owner, kubelet, removes it); default: a file hawser owns.
        ``cgroup_parent``: the container's cgroup is ``<cgroup_parent>/<id>``
        (unless ``options.cgroups_path`` is set); default: the runtime config's.
        ``extra_config``: JSON kept in the record's config beside the options
        (the CRI's metadata, labels, annotations...); its ``RUNTIME_HANDLER``
        names the runtime handler ("" or none: the default one), whose
        allowed annotations are all of ``options.annotations`` that reach the
        spec.
        ``exit_command``: a program its conmon runs when the container exits,
        with the container's id appended (``run -d --rm`` removes it so).
        ``network``: attach it through ``self.networking`` (its namespace,
        /etc/hosts and resolv.conf replace ``options``'); detached at removal.

        NotFound for an unknown image or runtime handler, AlreadyExists for a
        name in use, InvalidArgument for a bad option (unknown user, missing
        executable, invalid mount source, a recursive read-only mount the
        handler cannot make). On any failure nothing is left behind."""
        if name is not None and not NAME_RE.match(name):
            raise InvalidArgument(f"invalid container name {name!r}: use letters, digits, '_', '.', '-'")
        if log_path is not None and (not os.path.isabs(log_path) or os.path.normpath(log_path) != log_path):
            raise InvalidArgument(f"invalid log path {log_path!r}: must be a normalised absolute path")
        handler = self.handler(str((extra_config or {}).get(self.RUNTIME_HANDLER) or ""))
        if any(m.recursive_read_only for m in options.mounts) and \
                not handler.runc.features().recursive_read_only_mounts:
            raise InvalidArgument(f"runtime handler {handler.name!r} cannot make recursive read-only mounts "
                                  "(it needs the \"rro\" mount option and Linux 5.12 or later)",
                                  hint="ask for a plain read-only mount, or use another runtime handler")
        if options.annotations:
            options = replace(options, annotations=handler.annotations(options.annotations))
        runnable = self.images.runnable(image)
        image_name, top = runnable.name, runnable.top_snapshot
        snapshotter = self.snapshotter
        id_ = os.urandom(32).hex()
        name = name or f"hawser-{id_[:12]}"
        key = f"container-{id_}"
        parent = cgroup_parent if cgroup_parent else self.config.runtime.cgroup_parent
        cgroups_path = options.cgroups_path or f"{parent.rstrip('/')}/{id_}"
        options = replace(options, cgroups_path=cgroups_path)
        if not options.hostname and options.namespaces.uts is None:
            # Its own UTS namespace and no name given: the short id, as docker does.
            options = replace(options, hostname=id_[:12])
        config = _options_json(options, named_stop_signal(runnable.config, options))
        # What runs, by docker's rules (ps and inspect show it; the options keep only the overrides).
        config["command"] = {"entrypoint": list(options.entrypoint if options.entrypoint is not None
                                                else runnable.config.entrypoint),
                             "cmd": list(options.args if options.args is not None
                                         else () if options.entrypoint is not None else runnable.config.cmd)}
        if log_path is not None:
            config["log_path"] = log_path
        if extra_config:
            config.update(extra_config)
        if "healthcheck" in config:  # the CLI's overrides (hawser.runtime.health) laid over the image's HEALTHCHECK
            from hawser.runtime.health import merge_healthcheck

            health = merge_healthcheck(runnable.config.healthcheck, config.pop("healthcheck"))
            if health["test"]:  # none given and none in the image: the record has none
                config["healthcheck"] = health
        if exit_command:  # a start of the exited container arms its new conmon with it too
            config["exit_command"] = list(exit_command)
        config[self.RUNTIME_HANDLER] = handler.name  # resolved: a later default_runtime does not move it
        networking = self.networking if network is not None else None
        if networking is not None and network is not None:
            config.update(networking.plan(network, exposed_ports=runnable.config.exposed_ports))
        record = Container(namespace=self.namespace, id=id_, name=name, image=image_name,
                           image_id=runnable.image_id, snapshotter=snapshotter.name, snapshot_key=key,
                           config=config, labels=dict(labels or {}), created_at=time.time())
        undo = _Undo()
        with self._locked(id_) as lock:
            try:
                # The record first: from here on nothing can exist that hawser does not know of.
                self.records.create(record)
                undo.push(lambda: self.records.delete(id_))
                failpoint("create.after-record")
                bundle = self.bundle(id_)
                rootfs = os.path.join(bundle, "rootfs")
                # The bundle 0700, not just rootfs: the image's root dir mode
                # replaces rootfs' once it is mounted, and a host user who can
                # walk in would run the image's setuid-root files or open its
                # device nodes (containerd's CVE-2021-41103).
                os.makedirs(rootfs, mode=0o700)
                undo.push(lambda: shutil.rmtree(bundle, ignore_errors=True))
                os.chmod(bundle, 0o700)
                joining = None
                if networking is not None:  # its CNI ADD runs while the rootfs is made
                    from hawser.runtime._networking import Background

                    undo.push(lambda: networking.leave(record))
                    joining = Background(networking.join, record, hostname=options.hostname)
                    undo.push(joining.wait_quietly)  # (undone first: leave runs once join is over)
                mounts = snapshotter.prepare(key, top)
                undo.push(lambda: snapshotter.remove(key))
                if options.image_volumes:  # their binds join the others (a user namespace idmaps them too)
                    from hawser.runtime._image_volumes import mount_image_volumes

                    options = replace(options, mounts=options.mounts + mount_image_volumes(
                        options.image_volumes, container_id=id_, container_snapshot=key, bundle=bundle,
                        snapshotter=snapshotter, images=self.images, undo=undo.push, userns=options.userns))
                fills = [m for m in options.mounts if m.copy_up]  # before a user namespace's idmapped sources
                if options.userns is None:
                    mount_all(mounts, rootfs)
                    undo.push(lambda: unmount_all(rootfs, detach=True))
                else:
                    from hawser.runtime._userns import idmap_binds, mount_rootfs, prepare_bundle, unmount_binds

                    prepare_bundle(bundle, options.userns)
                    mount_rootfs(mounts, rootfs, options.userns, os.path.join(bundle, "layers"))
                    undo.push(lambda: unmount_all(rootfs, detach=True))
                    undo.push(lambda: unmount_binds(self._idmap_dir(id_)))
                    options = idmap_binds(options, self._idmap_dir(id_))
                if fills:  # new volumes get the image's content at their destination (docker's copy-up)
                    from hawser.runtime._copy_up import copy_up

                    for m in fills:
                        copy_up(rootfs, m.destination, m.source)
                failpoint("create.after-mount")
                if joining is not None:
                    joined: NetworkJoin = joining.wait()
                    options = replace(options, mounts=options.mounts + joined.mounts,
                                      namespaces=replace(options.namespaces, network=joined.netns))
                    if joined.networks:
                        record = self.records.update(id_, config={"networks": joined.networks})
                spec = build_spec(runnable.config, options, rootfs=rootfs, host=self.host)
                process = spec["process"]
                env_path = next((e[5:] for e in process.get("env", ()) if e.startswith("PATH=")), "")
                find_executable(rootfs, process["args"][0], env_path, process.get("cwd", "/"))
                write_json(os.path.join(bundle, "config.json"), spec)
                if log_path is None:
                    os.makedirs(os.path.dirname(self.log_path(id_)), mode=0o700, exist_ok=True)
                    undo.push(lambda: shutil.rmtree(os.path.dirname(self.log_path(id_)), ignore_errors=True))
                else:
                    try:
                        os.makedirs(os.path.dirname(log_path), mode=0o755, exist_ok=True)
                    except (FileExistsError, NotADirectoryError):
                        raise FailedPrecondition(f"cannot make the log directory of {log_path}: "
                                                 "a file is in the way") from None
                    if not os.path.exists(log_path):
                        undo.push(lambda: unlink(log_path))
                pid = self._conmon_create(record, bundle, tty=options.tty, stdin=options.stdin,
                                          leave_stdin_open=options.stdin and not options.stdin_once, undo=undo,
                                          exit_command=[*exit_command, id_] if exit_command else ())
                failpoint("create.after-conmon")
            except BaseException:
                self._make_room()  # a full disk: the undo's records need room to be removed
                undo.run()
                lock.release(remove=True)
                raise
        info = ContainerInfo(record=record, status=ContainerStatus(CREATED, pid=pid), bundle=self.bundle(id_),
                             log_path=self.container_log_path(record))
        self._notify(EVENT_CREATED, record)
        return info

    def _conmon_create(self, record: Container, bundle: str, *, tty: bool, stdin: bool, undo: _Undo,
                       leave_stdin_open: bool = False, exit_command: Sequence[str] = ()) -> int:
        id_ = record.id
        paths = ConmonPaths(bundle=bundle, pid_file=os.path.join(bundle, "pidfile"),
                            conmon_pid_file=os.path.join(bundle, "conmon.pid"), exit_dir=self.exits_dir,
                            log_path=self.container_log_path(record), socket_dir=self.sockets_dir)
        runc = self.runc_for(record)
        argv = conmon_argv(runc=runc, container_id=id_, session_id=id_, name=record.name, paths=paths,
                           tty=tty, stdin=stdin, log_size_max=self.config.runtime.log_size_max,
                           leave_stdin_open=leave_stdin_open, conmon=self.config.runtime.conmon,
                           exit_command=exit_command)
        undo.push(lambda: self._forget_runtime(id_, runc=runc))
        session = ConmonSession(argv, cwd=bundle)
        try:
            return session.wait_pid()
        finally:
            session.close()

    def _forget_runtime(self, id_: str, *, meanwhile: Callable[[], None] | None = None,
                        strict: bool = False, runc: Runc | None = None) -> None:
        """runc's container gone, conmon gone, its exit file gone. Idempotent.
        ``runc``: the container's runtime (default: the default handler's).
        ``meanwhile`` runs while runc deletes (a runc start-up is ~5 ms).
        ``strict``: a failed runc delete is raised (FailedPrecondition, once
        ``meanwhile`` ran), so that the caller keeps what a retry needs; else
        it is ignored."""
        failed: HawserError | None = None
        runc = runc or self.runc
        deleting = None
        try:
            done = runc.delete_stopped(id_)  # most removals: no runc process at all
        except OSError as exc:  # its state directory half removed: runc finishes it
            log.debug("runc state not removed here", extra={"id": id_, "error": str(exc)})
            done = False
        try:
            if not done:
                deleting = runc.start_delete(id_, force=True)
        except HawserError as exc:
            failed = exc
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            if deleting is not None:
                try:
                    runc.finish_delete(deleting)
                except HawserError as exc:
                    failed = exc
        if strict and failed is not None:
            # runc keeps its state and the container's cgroups until a delete succeeds.
            detail = getattr(failed, "stderr", "") or str(failed)
            raise FailedPrecondition(f"container {id_[:12]}: runc delete failed: {detail}",
                                     hint="retry the removal (hawser rm -f)")
        self._wait_conmon(id_)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._exit_file(id_))

    def _wait_conmon(self, id_: str) -> None:
        with ConmonWatch(read_int(os.path.join(self.bundle(id_), "conmon.pid"))) as conmon:
            if not conmon.wait(CONMON_EXIT_TIMEOUT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(conmon.pid, signal.SIGKILL)

    def start(self, text: str) -> ContainerInfo:
        """Start a created container, or start again one that has exited
        (docker's start of a stopped container: the same id, name, writable
        layer and log, a new process).  FailedPrecondition in any other
        state, and for an exited container the CRI or containerd's API made
        (kubelet makes a new container; a containerd client a new task)."""
        record = self.lookup(text)
        with self._locked(record.id):
            self._start_any(record, self.status(record))
        return self.info(record)

    def _start_any(self, record: Container, status: ContainerStatus) -> None:
        """``start`` with the container's lock held and its status read."""
        if status.state == CREATED:
            self._start(record)
        elif status.state == EXITED and self.restartable(record):
            self._start_again(record)
        elif status.state == EXITED:
            raise FailedPrecondition(f"container {record.name} is exited; a container made through the CRI or "
                                     "containerd's API starts only once", hint="create a new one")
        else:
            raise FailedPrecondition(f"container {record.name} is {status.state}; only a created or exited "
                                     "container can start", hint="create a new one (hawser run)")

    @staticmethod
    def restartable(record: Container) -> bool:
        """Whether an exited container can start again: one the CLI made, not the CRI's or containerd's."""
        return "containerd" not in record.config and not any(key.startswith("cri.") for key in record.config)

    def _start_again(self, record: Container) -> None:
        """Start an exited container again, in its own bundle: runc's old
        container and conmon's exit file go (_forget_runtime), a new conmon
        creates it again from the same config.json over the same rootfs
        (mounted again if something unmounted it), then runc starts it.
        Namespaces the spec names by path (the network a CLI container was
        given) are joined again as they are."""
        id_ = record.id
        bundle = self.bundle(id_)
        if not os.path.exists(os.path.join(bundle, "config.json")):
            raise FailedPrecondition(f"container {record.name} has no runtime state (a reboot?)",
                                     hint="hawser system restart-containers makes it again; or rm and run")
        _check_bind_sources(record.name, os.path.join(bundle, "config.json"))
        runc = self.runc_for(record)
        self._forget_runtime(id_, runc=runc)
        for stale in ("exit-seen", "start-told", "oom", "pidfile", "conmon.pid"):
            unlink(os.path.join(bundle, stale))
        remove_link_or_tree(os.path.join(self.sockets_dir, id_))  # conmon links it again
        rootfs = os.path.join(bundle, "rootfs")
        if not os.path.ismount(rootfs):
            if record.config.get("userns"):
                raise FailedPrecondition(f"container {record.name}: its rootfs is no longer mounted",
                                         hint="remove it and run a new one")
            mount_all(self.snapshotter.mounts(record.snapshot_key), rootfs)
        config = record.config
        stdin = bool(config.get("stdin"))
        # create's, or the one `update --restart` (runtime.restart) gave a container created without
        exit_command = [str(a) for a in config.get("exit_command") or (config.get("restart") or {}).get(
            "exit_command") or ()]
        undo = _Undo()
        try:
            self._conmon_create(record, bundle, tty=bool(config.get("tty")), stdin=stdin, undo=undo,
                                leave_stdin_open=stdin and not config.get("stdin_once"),
                                exit_command=[*exit_command, id_] if exit_command else ())
        except BaseException:
            undo.run()
            raise
        self._start(record)

    def start_created(self, info: ContainerInfo) -> None:
        """Start a container this process has just created (no state check: run's fast path)."""
        with self._locked(info.id):
            self._start(info.record)

    def _start(self, record: Container) -> None:
        # Stamp before starting: a container that exits at once must still show when it started.
        bundle = self.bundle(record.id)
        write_text(os.path.join(bundle, "started"), repr(time.time()))
        failpoint("start.before-runc")
        try:
            self.runc_for(record).start(record.id)
            failpoint("start.after-runc")
            self._notify(EVENT_STARTED, record)
        finally:
            # The exit of a container that ends at once waits for this (_exit_seen):
            # observers hear "started" before "stopped", as containerd sends them.
            with contextlib.suppress(OSError):
                os.close(os.open(os.path.join(bundle, "start-told"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                                 0o644))

    # --- signals, stop, wait --------------------------------------------------

    def kill(self, text: str, sig: int = signal.SIGKILL) -> None:
        record = self.lookup(text)
        state = self.status(record).state
        if state not in (RUNNING, PAUSED, CREATED):
            raise FailedPrecondition(f"container {record.name} is not running ({state})")
        self.runc_for(record).kill(record.id, sig)

    def wait(self, text: str, timeout: float | None = None) -> ContainerStatus:
        """Block until the container has exited; DeadlineExceeded after ``timeout``."""
        record = self.lookup(text)
        return self._wait_exit(record, timeout)

    def _wait_exit(self, record: Container, timeout: float | None) -> ContainerStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        with ConmonWatch(read_int(os.path.join(self.bundle(record.id), "conmon.pid"))) as conmon:
            for pause in backoff():
                # conmon writes the exit file, then exits; only if it is gone without one is runc asked.
                monitored = conmon.alive()
                if not monitored or os.path.exists(self._exit_file(record.id)):
                    status = self.status(record)
                    if status.state in (EXITED, UNKNOWN):
                        return status
                if deadline is not None:
                    pause = min(pause, deadline - time.monotonic())
                    if pause <= 0:
                        raise DeadlineExceeded(f"container {record.name} is still running after {timeout:g}s")
                if monitored:
                    conmon.wait(pause)  # wakes when conmon exits
                else:
                    time.sleep(pause)
        raise AssertionError("unreachable")

    def stop(self, text: str, timeout: float | None = None) -> ContainerStatus:
        """The stop signal, then SIGKILL after ``timeout`` seconds. Idempotent."""
        record = self.lookup(text)
        if timeout is None:
            timeout = float(self.config.runtime.stop_timeout)
        status = self.status(record)
        if status.state in (EXITED, UNKNOWN):
            return status
        runc = self.runc_for(record)
        if status.state == PAUSED:
            runc.resume(record.id)  # a frozen process cannot act on its stop signal
        sig = int(record.config.get("stop_signal") or signal.SIGTERM)
        if timeout > 0:
            with contextlib.suppress(FailedPrecondition, NotFound):
                runc.kill(record.id, sig if status.state in (RUNNING, PAUSED) else signal.SIGKILL)
            failpoint("stop.after-signal")
            try:
                status = self._wait_exit(record, timeout)
            except DeadlineExceeded:
                pass
            else:
                return status  # its observers heard of the exit in status()
        with contextlib.suppress(FailedPrecondition, NotFound):
            runc.kill(record.id, signal.SIGKILL, all_processes=True)
        return self._wait_exit(record, KILL_WAIT)

    def pause(self, text: str) -> None:
        record = self.lookup(text)
        state = self.status(record).state
        if state == PAUSED:  # docker: "Container X is already paused"
            raise FailedPrecondition(f"container {record.name} is already paused")
        if state != RUNNING:
            raise FailedPrecondition(f"container {record.name} is not running")
        self.runc_for(record).pause(record.id)

    def resume(self, text: str) -> None:
        record = self.lookup(text)
        if self.status(record).state != PAUSED:
            raise FailedPrecondition(f"container {record.name} is not paused")
        self.runc_for(record).resume(record.id)

    # --- remove ---------------------------------------------------------------

    def remove(self, text: str, *, force: bool = False) -> str:
        """Remove a container and everything it holds. A running one needs
        ``force`` (it is killed). Finishes what an interrupted create or rm left."""
        record = self.lookup(text)
        self._make_room()  # a removal on a full disk needs a little room to record it
        with self._locked(record.id) as lock:
            try:
                # Another removal may have finished while this one waited (``rm`` and a
                # ``run -d --rm`` container's exit command, say).
                self.records.get(record.id, namespace=record.namespace)
            except NotFound:
                lock.release(remove=True)
                raise NotFound(f"no such container: {text}") from None
            status = self.status(record)
            if status.state in (RUNNING, PAUSED) and not force:
                raise FailedPrecondition(f"container {record.name} is {status.state}",
                                         hint="stop it first, or remove it with -f")
            # A created container has a pid (runc's init, waiting); one made through
            # containerd's API without a task has none and nothing to kill.
            runc = self.runc_for(record)
            if status.state in (RUNNING, PAUSED) or (status.state == CREATED and status.pid):
                with contextlib.suppress(HawserError):
                    if status.state == PAUSED:
                        runc.resume(record.id)
                    runc.kill(record.id, signal.SIGKILL, all_processes=True)
                failpoint("remove.after-kill")
                with contextlib.suppress(DeadlineExceeded):
                    self._wait_exit(record, KILL_WAIT)
            bundle = self.bundle(record.id)
            leaving = None
            if self.networking is not None and "network" in record.config:
                from hawser.runtime._networking import Background

                # CNI DEL (iptables, mostly) while runc forgets it and the rootfs goes
                leaving = Background(self.networking.leave, record)

            def release_rootfs() -> None:
                # The container's processes are gone: its rootfs can go while runc deletes.
                rootfs = os.path.join(bundle, "rootfs")
                if os.path.isdir(rootfs):
                    with contextlib.suppress(OSError):
                        unmount_all(rootfs, detach=True)
                with contextlib.suppress(NotFound):
                    self.snapshotter.remove(record.snapshot_key)
                if "image_volumes" in record.config:
                    from hawser.runtime._image_volumes import release_image_volumes

                    release_image_volumes(record, bundle, self.snapshotter)

            self._forget_runtime(record.id, meanwhile=release_rootfs, strict=True, runc=runc)
            failpoint("remove.after-runc-delete")
            if leaving is not None:
                leaving.wait()  # raises rather than leak: the record stays for a retry
            if "healthcheck" in record.config:  # its monitor would go with conmon; it goes now
                from hawser.runtime.health import stop_monitor

                stop_monitor(bundle)
            if os.path.isdir(self._idmap_dir(record.id)):
                from hawser.runtime._userns import unmount_binds

                unmount_binds(self._idmap_dir(record.id))  # raises rather than leave a volume mounted
            shutil.rmtree(bundle, ignore_errors=True)
            remove_link_or_tree(os.path.join(self.sockets_dir, record.id))  # conmon's link to the attach socket
            # A log path given at create belongs to its caller (kubelet removes it).
            shutil.rmtree(os.path.dirname(self.log_path(record.id)), ignore_errors=True)
            failpoint("remove.before-record-delete")
            self.records.delete(record.id)
            lock.release(remove=True)  # nothing is left for it to guard
        self._notify(EVENT_DELETED, record)
        return record.id

    # --- resources and logs of a live container ---------------------------------

    def spec(self, record: Container) -> dict[str, Any]:
        """The container's runtime spec (its bundle's config.json).
        FailedPrecondition when the bundle is gone."""
        try:
            with open(os.path.join(self.bundle(record.id), "config.json"), encoding="utf-8") as f:
                spec: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            raise FailedPrecondition(f"container {record.name} has no runtime state") from None
        return spec

    def update_resources(self, text: str, resources: Resources) -> None:
        """Change the cgroup limits of a created, running or paused container
        (``runc update``), and record them in its spec and in its record's
        options (``config["resources"]``, the ``Resources`` it was created
        with): the spec is gone after a reboot, the record is not, so status
        still shows them, and the options the record keeps stay the limits
        the container has.
        Fields left None keep their value.  FailedPrecondition for an exited
        container; InvalidArgument for a value the kernel refuses."""
        from hawser.runtime._spec import update_spec_resources

        record = self.lookup(text)
        with self._locked(record.id):
            state = self.status(record).state
            if state not in (CREATED, RUNNING, PAUSED):
                raise FailedPrecondition(f"container {record.name} is {state}: its resources cannot change")
            spec = self.spec(record)
            changed = update_spec_resources(spec, resources)
            # What runc update takes: the resource sections, without device rules.
            self.runc_for(record).update(record.id,
                                         {k: v for k, v in changed.items() if k in ("cpu", "memory", "pids")})
            write_json(os.path.join(self.bundle(record.id), "config.json"), spec)
            # Last, as every record write: after what it describes is in place.
            # The merged values, not the request's: a new memory limit may move swap too.
            self.records.update(record.id, namespace=record.namespace,
                                config={"resources": _resources_options(changed)})

    def reopen_log(self, text: str, *, timeout: float = REOPEN_LOG_TIMEOUT) -> None:
        """Have conmon reopen the container's log file (after it was rotated:
        renamed away), and wait until the new file exists.  Nothing written
        is lost: conmon writes to the old file until it opens the new one.
        FailedPrecondition if the container is not running (no file is made)."""
        record = self.lookup(text)
        state = self.status(record).state
        if state not in (RUNNING, PAUSED):
            raise FailedPrecondition(f"container {record.name} is not running ({state}): no log to reopen")
        path = self.container_log_path(record)
        before = inode(path)
        ctl = os.path.join(self.bundle(record.id), "ctl")
        try:
            # Non-blocking: without conmon reading the fifo, open fails (ENXIO) instead of hanging.
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise FailedPrecondition(f"container {record.name}: conmon does not listen on {ctl} "
                                     f"({exc.strerror})") from None
        try:
            os.write(fd, f"{_CONMON_REOPEN_LOGS} 0 0\n".encode())
        finally:
            os.close(fd)
        # conmon opens <path>.tmp and renames it over <path>: a new inode appears.
        deadline = time.monotonic() + timeout
        for pause in backoff():
            now = inode(path)
            if now is not None and now != before:
                return
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"container {record.name}: conmon did not reopen {path} within {timeout:g}s")
            time.sleep(pause)

    # --- exec -----------------------------------------------------------------

    def _exec_process(self, record: Container, argv: Sequence[str], *, tty: bool, env: Sequence[str] = (),
                      user: str | None = None, workdir: str | None = None) -> dict[str, Any]:
        if not argv:
            raise InvalidArgument("exec needs a command")
        try:
            with open(os.path.join(self.bundle(record.id), "config.json"), encoding="utf-8") as f:
                spec = json.load(f)
        except FileNotFoundError:
            raise FailedPrecondition(f"container {record.name} has no runtime state") from None
        process: dict[str, Any] = dict(spec["process"])
        process["args"] = list(argv)
        process["terminal"] = tty
        process.pop("consoleSize", None)
        merged = {e.split("=", 1)[0]: e for e in process.get("env", [])}
        merged.update({e.split("=", 1)[0]: e for e in env})
        process["env"] = list(merged.values())
        if workdir:
            process["cwd"] = workdir
        if user is not None:
            from hawser.runtime._user import resolve_user

            resolved = resolve_user(os.path.join(self.bundle(record.id), "rootfs"), user)
            process["user"] = {"uid": resolved.uid, "gid": resolved.gid,
                               "additionalGids": list(resolved.additional_gids)}
        return process

    def _running(self, text: str) -> Container:
        record = self.lookup(text)
        state = self.status(record).state
        if state != RUNNING:
            raise FailedPrecondition(f"container {record.name} is not running ({state})")
        return record

    def exec_sync(self, text: str, argv: Sequence[str], *, timeout: float = 0, env: Sequence[str] = ()
                  ) -> ExecResult:
        """Run a command in a running container and collect its output. The
        timeout (seconds, 0: none) holds even if a background process keeps
        the output open: conmon kills the exec at the deadline."""
        record = self._running(text)
        process = self._exec_process(record, argv, tty=False, env=env)
        exec_id = os.urandom(8).hex()
        exec_dir = os.path.join(self.bundle(record.id), "exec", exec_id)
        os.makedirs(exec_dir, mode=0o700)
        try:
            spec_file = os.path.join(exec_dir, "process.json")
            write_json(spec_file, process)
            log = os.path.join(exec_dir, "output.log")
            paths = ConmonPaths(bundle=None, pid_file=os.path.join(exec_dir, "pid"),
                                conmon_pid_file=os.path.join(exec_dir, "conmon.pid"), exit_dir=exec_dir,
                                log_path=log, socket_dir=self.sockets_dir)
            runc = self.runc_for(record)
            argv_ = conmon_argv(runc=runc, container_id=record.id, session_id=exec_id, name=record.name,
                                paths=paths, tty=False, stdin=False, exec_process=spec_file,
                                timeout=int(timeout + 0.999) if timeout > 0 else 0,
                                conmon=self.config.runtime.conmon)
            session = ConmonSession(argv_, cwd=exec_dir)
            conmon = None
            code: int | None = None
            try:
                session.wait_pid()
                self.exec_started(record, exec_id, argv)
                # Watched from now (it wrote its pid file before the exec's pid), so
                # the pid cannot be reused under us.
                conmon = ConmonWatch(read_int(paths.conmon_pid_file))
                code, message = session.wait_exit(None if timeout <= 0 else timeout + 30)
                # conmon reports the status, then drains the output into the log and
                # exits: the call returns when it is gone, so the log is whole and no
                # exec's conmon outlives its call.
                conmon.wait_or_kill(EXEC_CONMON_EXIT_GRACE)
            finally:
                if conmon is not None:
                    conmon.close()
                    self.exec_exited(record, exec_id, code)
                session.close()
            if "timed out" in message:
                # conmon kills runc exec, its child; the command itself (runc's child,
                # now the container's) is ours to end, or it runs on (a probe that times
                # out each period would pile them up to the pod's pid limit).
                kill_process(read_int(paths.pid_file), signal.SIGKILL)
                raise DeadlineExceeded(f"command {argv[0]!r} timed out after {timeout:g}s")
            entries = read_log(log)
            stdout = b"".join(e.data for e in entries if e.stream == "stdout")
            stderr = b"".join(e.data for e in entries if e.stream == "stderr")
            return ExecResult(code, stdout, stderr)
        finally:
            shutil.rmtree(exec_dir, ignore_errors=True)

    def exec_attached(self, text: str, argv: Sequence[str], *, tty: bool, detach: bool = False,
                      env: Sequence[str] = (), user: str | None = None, workdir: str | None = None) -> int:
        """Run a command in a running container with this process's stdio (a
        terminal with ``tty``); its exit status. ``detach``: start it and return 0."""
        record = self._running(text)
        process = self._exec_process(record, argv, tty=tty and not detach, env=env, user=user, workdir=workdir)
        if process["terminal"] and not any(e.startswith("TERM=") for e in process["env"]):
            process["env"].append("TERM=xterm")  # as run -t, and docker's exec -t
        self._check_exec(record, process)
        exec_dir = os.path.join(self.bundle(record.id), "exec", os.urandom(8).hex())
        os.makedirs(exec_dir, mode=0o700)
        try:
            spec_file = os.path.join(exec_dir, "process.json")
            write_json(spec_file, process)
            cmd = self.runc_for(record).exec_argv(record.id, spec_file, tty=tty and not detach, detach=detach,
                                                  pid_file=os.path.join(exec_dir, "pid"))
            stdio = subprocess.DEVNULL if detach else None
            exec_id = os.path.basename(exec_dir)
            proc = subprocess.Popen(cmd, stdin=stdio, stdout=stdio, stderr=None if not detach else subprocess.PIPE)
            self.exec_started(record, exec_id, argv)
            try:
                _, err = proc.communicate()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                if not detach:  # a detached command's end is nobody's to see
                    self.exec_exited(record, exec_id, proc.returncode)
            if detach and proc.returncode != 0:
                raise FailedPrecondition(f"exec failed: {(err or b'').decode(errors='replace').strip()}")
            return proc.returncode
        finally:
            shutil.rmtree(exec_dir, ignore_errors=True)

    def _check_exec(self, record: Container, process: Mapping[str, Any]) -> None:
        """What runc would refuse with a raw log line and status 255, said first
        in one line with docker's exit codes: 127 for a command that is not
        found, 126 for one that cannot be invoked (a missing working directory).
        Looked up in the container's own view of its files (its mounts too)."""
        pid = self.status(record).pid
        if not pid:
            return
        root = f"/proc/{pid}/root"
        cwd = str(process.get("cwd") or "/")
        if not os.path.isdir(resolve_in_root(root, cwd)):
            error: HawserError = FailedPrecondition(f"exec in {record.name}: working directory {cwd!r} does not "
                                                    "exist in the container, or is not a directory")
            error.exit_code = 126
            raise error
        env_path = next((e[5:] for e in process.get("env", ()) if e.startswith("PATH=")), "")
        try:
            find_executable(root, process["args"][0], env_path, cwd)
        except InvalidArgument as exc:
            if exc.exit_code == 126:  # there, but a directory or not executable
                denied = FailedPrecondition(f"exec in {record.name}: {process['args'][0]!r}: permission denied "
                                            "(a directory, or not an executable file)")
                denied.exit_code = 126
                raise denied from None
            error = NotFound(f"exec in {record.name}: {process['args'][0]!r}: executable file not found in "
                             f"$PATH ({env_path})" if "/" not in process["args"][0] else
                             f"exec in {record.name}: {process['args'][0]!r}: no such executable file")
            error.exit_code = 127
            raise error from None

    def exec_started(self, record: Container, exec_id: str, argv: Sequence[str]) -> None:
        """Tell the observers an exec began (the CRI's streaming exec runs its own)."""
        self._notify(EVENT_EXEC_STARTED, record, {"execID": exec_id, "command": " ".join(argv)})

    def exec_exited(self, record: Container, exec_id: str, exit_code: int | None) -> None:
        """Tell the observers an exec ended, with its status (None: unknown, it was killed)."""
        self._notify(EVENT_EXEC_EXITED, record,
                     {"execID": exec_id, "exitCode": "" if exit_code is None else str(exit_code)})

    # --- logs and stats -------------------------------------------------------

    def logs(self, text: str, *, since: float | None = None, tail: int | None = None,
             follow: bool = False) -> Iterator[LogEntry]:
        record = self.lookup(text)
        path = self.container_log_path(record)
        start = log_size(path)
        yield from read_log(path, since=since, tail=tail)
        if follow:
            yield from follow_log(path, start=start,
                                  done=lambda: self.status(record).state in (EXITED, UNKNOWN))

    def follow_output(self, record: Container, start: int = 0) -> Iterator[LogEntry]:
        """Everything the container writes from byte ``start`` of its log, until it exits."""
        exit_file = self._exit_file(record.id)
        conmon = ConmonWatch(read_int(os.path.join(self.bundle(record.id), "conmon.pid")))
        try:
            yield from follow_log(self.container_log_path(record), start=start, idle=conmon.wait,
                                  done=lambda: os.path.exists(exit_file) or not conmon.alive())
        finally:
            conmon.close()


# --- helpers ------------------------------------------------------------------


# A spec's linux.resources entries -> the ``Resources`` field each one is set from.
_SPEC_RESOURCES = {
    ("cpu", "shares"): "cpu_shares", ("cpu", "quota"): "cpu_quota", ("cpu", "period"): "cpu_period",
    ("cpu", "cpus"): "cpuset_cpus", ("cpu", "mems"): "cpuset_mems", ("memory", "limit"): "memory_limit",
    ("memory", "swap"): "memory_swap", ("pids", "limit"): "pids_limit",
}


def _check_bind_sources(name: str, config_path: str) -> None:
    """Before a container starts again: every bind mount's source must still
    be there (a removed host directory, or the files of the container whose
    network it joined), else one line saying which, not runc's mount error."""
    with open(config_path, "rb") as f:
        spec = json.load(f)
    for mount in spec.get("mounts") or ():
        if mount.get("type") == "bind" and not os.path.lexists(str(mount.get("source", ""))):
            raise FailedPrecondition(f"container {name} cannot start again: the source of its mount at "
                                     f"{mount.get('destination')} is gone ({mount.get('source')})",
                                     hint="remove it and run a new one")


def _resources_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Resources`` fields (as the record's JSON has them) that a spec's
    ``linux.resources`` sets; a field it does not set is left out (kept)."""
    out: dict[str, Any] = {}
    for (section, key), field_name in _SPEC_RESOURCES.items():
        value = (resources.get(section) or {}).get(key)
        if value is not None:
            out[field_name] = value
    return out


def _options_json(options: ContainerOptions, stop_sig: int | None) -> dict[str, Any]:
    """What inspect shows and stop needs, as plain JSON.  ``stop_sig``: the
    signal the request or the image names; None (stop sends SIGTERM) when neither does."""
    from hawser._dataclass import asdict

    data = asdict(options)
    data["stop_signal"] = stop_sig
    # A whole seccomp profile is too big for every listing of the record; the spec has it.
    data["seccomp_profile"] = options.seccomp_profile is not None
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result


__all__ = ["CREATED", "EVENT_CREATED", "EVENT_DELETED", "EVENT_STARTED", "EVENT_STOPPED", "EXITED", "PAUSED",
           "RUNNING", "UNKNOWN", "ContainerInfo", "ContainerManager", "ContainerStatus", "ExecResult"]
