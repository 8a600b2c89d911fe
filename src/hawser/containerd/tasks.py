"""containerd.services.tasks.v1.Tasks: the processes of containers, as
containerd's task service runs them through its shim, run here by conmon
(``hawser.runtime.tasks``): hawserd is never their parent and may restart
under them.

A task is made from the container record's OCI spec (as the client wrote it
through the Containers API; for a container hawser made itself, its
bundle's spec) and the rootfs mounts the request carries, else the record's
snapshot.  Its stdio are the FIFOs the client made (``ctr`` keeps them under
/run/containerd/fifo); the process gets them directly, so its output never
passes through hawserd.  Wait waits on conmon's pidfd on the event loop, and
answers at once for a task that exited while hawserd was down (conmon wrote
its exit file).

Metrics answers containerd's cgroup v1 Metrics (``ctr tasks metrics``)
from the task's cgroup; Update applies the OCI LinuxResources it carries
(``runc update``).  A task or exec with a terminal (``ctr run -t``,
``ctr tasks exec -t``) has conmon hold it and a relay process copy to and
from the FIFOs.  Not supported: Checkpoint (UNIMPLEMENTED).
CloseIO is a no-op: the process holds the stdin FIFO itself, and it sees EOF
when the client closes its end, which ctr does before it asks.

Errors as containerd answers them: NOT_FOUND for an unknown container,
task or exec; ALREADY_EXISTS for a second task or a used exec id;
FAILED_PRECONDITION for a task in the wrong state (deleting a running one).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from hawser.containerd._api.cgroups.v1 import metrics_pb2 as cgroups_pb2
from hawser.containerd._api.events import task_pb2 as task_events
from hawser.containerd._api.services.tasks.v1 import tasks_pb2 as pb
from hawser.containerd._api.services.tasks.v1 import tasks_pb2_grpc
from hawser.containerd._api.types import metrics_pb2 as types_metrics_pb2
from hawser.containerd._api.types.task import task_pb2
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.containerd._records import RUNTIMES, oci_spec, runtime_name
from hawser.containerd.events import journal_topic
from hawser.containerd.managers import ContainerManagers
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from hawser.runtime import CREATED, EXITED, PAUSED, RUNNING, ContainerManager, ContainerStatsReader
from hawser.runtime import tasks as rt
from hawser.snapshots import Mount

if TYPE_CHECKING:
    from hawser.metadata import Container


T = TypeVar("T")

_STATUS = {CREATED: task_pb2.CREATED, RUNNING: task_pb2.RUNNING, PAUSED: task_pb2.PAUSED, EXITED: task_pb2.STOPPED}


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    if seconds:
        stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def to_process(state: rt.ProcessState) -> task_pb2.Process:
    """A process as containerd's message has it: a task's id is its container's, an exec's its exec id."""
    return task_pb2.Process(container_id=state.container_id, id=state.exec_id or state.container_id,
                            pid=max(state.pid, 0),
                            status=_STATUS.get(state.state, task_pb2.UNKNOWN), stdin=state.io.stdin,
                            stdout=state.io.stdout, stderr=state.io.stderr, terminal=state.io.terminal,
                            exit_status=state.exit_status, exited_at=_timestamp(state.exited_at))


def task_spec(manager: ContainerManager, record: Container) -> dict[str, Any]:
    """The spec a task of ``record`` runs: the client's (API-made containers), else its bundle's.
    FailedPrecondition when it has none."""
    spec = oci_spec(record, bundle=manager.bundle(record.id))
    if spec is None:
        raise FailedPrecondition(f"container {record.id} has no spec to run")
    return spec


def from_any(message: any_pb2.Any, what: str) -> dict[str, Any]:
    """An OCI object in an Any (JSON, as containerd's typeurl marshals the spec types)."""
    try:
        value = json.loads(message.value or b"{}")
    except ValueError:
        raise InvalidArgument(f"the {what} is not JSON (type {message.type_url or 'none'})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"the {what} is not a JSON object")
    return value


def to_mounts(mounts: Any) -> list[Mount]:
    out = []
    for m in mounts:
        if not m.type or not m.source:
            raise InvalidArgument(f"rootfs mount {m.type!r} {m.source!r}: type and source are required")
        out.append(Mount(type=m.type, source=m.source, options=tuple(m.options)))
    return out


class Tasks(tasks_pb2_grpc.TasksServicer):
    """Each request's blocking work (records, runc, the journal) is one trip to
    a worker thread: ctr makes dozens of small requests per run, and a trip
    costs more than most of them."""

    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps
        self._manager = deps.containers or ContainerManagers(deps.store, deps.journal)

    def _journal(self, manager: ContainerManager, topic: str, event: Any) -> None:
        """A task change the container manager's observers do not hear of, for Events subscribers."""
        journal_topic(self._deps.journal, manager.namespace, topic, event)

    def _record(self, manager: ContainerManager, container_id: str) -> Container:
        if not container_id:
            raise InvalidArgument("container_id is required")
        try:
            return manager.records.get(container_id)
        except NotFound:
            raise NotFound(f"container {container_id!r} in namespace {manager.namespace!r}: not found") from None

    async def _call(self, context: Context, method: str, work: Callable[[ContainerManager], T]) -> T:
        """``work`` (blocking) in the request's namespace, in a worker thread."""
        async def in_namespace() -> T:
            return await self._deps.blocking(work, self._manager(namespace_of(context)))

        return await serve(context, method, in_namespace())

    # --- the task ----------------------------------------------------------------------

    async def Create(self, request: pb.CreateTaskRequest, context: Context) -> pb.CreateTaskResponse:
        def work(manager: ContainerManager) -> pb.CreateTaskResponse:
            if request.HasField("checkpoint") and request.checkpoint.digest:
                raise Unimplemented("restoring a task from a checkpoint is not supported")
            if request.runtime_path:
                raise InvalidArgument("runtime_path is not supported: tasks run with runc")
            record = self._record(manager, request.container_id)
            name = runtime_name(record)
            if name not in RUNTIMES:
                raise InvalidArgument(f"runtime {name!r} is not supported: use one of {', '.join(RUNTIMES)}")
            spec = task_spec(manager, record)
            io = rt.TaskIO(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr,
                           terminal=request.terminal)
            pid = rt.create_task(manager, record, spec, rootfs=to_mounts(request.rootfs), io=io)
            self._journal(manager, "/tasks/create", task_events.TaskCreate(
                container_id=record.id, bundle=manager.bundle(record.id), rootfs=request.rootfs,
                io=task_events.TaskIO(stdin=io.stdin, stdout=io.stdout, stderr=io.stderr, terminal=io.terminal),
                pid=pid))
            return pb.CreateTaskResponse(container_id=record.id, pid=pid)

        return await self._call(context, "Create", work)

    async def Start(self, request: pb.StartRequest, context: Context) -> pb.StartResponse:
        def work(manager: ContainerManager) -> pb.StartResponse:
            record = self._record(manager, request.container_id)
            if request.exec_id:
                return pb.StartResponse(pid=rt.start_exec(manager, record, request.exec_id))
            return pb.StartResponse(pid=rt.start_task(manager, record))

        return await self._call(context, "Start", work)

    async def Delete(self, request: pb.DeleteTaskRequest, context: Context) -> pb.DeleteResponse:
        def work(manager: ContainerManager) -> pb.DeleteResponse:
            record = self._record(manager, request.container_id)
            state = rt.delete_task(manager, record)
            self._journal(manager, "/tasks/delete", task_events.TaskDelete(
                container_id=record.id, pid=max(state.pid, 0), exit_status=state.exit_status,
                exited_at=_timestamp(state.exited_at)))
            return pb.DeleteResponse(id=record.id, pid=max(state.pid, 0), exit_status=state.exit_status,
                                     exited_at=_timestamp(state.exited_at))

        return await self._call(context, "Delete", work)

    async def DeleteProcess(self, request: pb.DeleteProcessRequest, context: Context) -> pb.DeleteResponse:
        def work(manager: ContainerManager) -> pb.DeleteResponse:
            record = self._record(manager, request.container_id)
            if not request.exec_id:
                raise InvalidArgument("exec_id is required (Delete deletes the task)")
            state = rt.delete_exec(manager, record, request.exec_id)
            return pb.DeleteResponse(id=request.exec_id, pid=max(state.pid, 0), exit_status=state.exit_status,
                                     exited_at=_timestamp(state.exited_at))

        return await self._call(context, "DeleteProcess", work)

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.GetResponse:
        def work(manager: ContainerManager) -> pb.GetResponse:
            record = self._record(manager, request.container_id)
            if request.exec_id:
                return pb.GetResponse(process=to_process(rt.exec_state(manager, record, request.exec_id)))
            return pb.GetResponse(process=to_process(rt.task_state(manager, record)))

        return await self._call(context, "Get", work)

    async def List(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        def work(manager: ContainerManager) -> pb.ListTasksResponse:
            out = []
            for record in manager.records.list():
                try:
                    out.append(to_process(rt.task_state(manager, record)))
                except NotFound:
                    continue
            return pb.ListTasksResponse(tasks=out)

        return await self._call(context, "List", work)

    async def Kill(self, request: pb.KillRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            sig = request.signal or int(signal.SIGTERM)
            if request.exec_id:
                rt.kill_exec(manager, record, request.exec_id, sig)
            else:
                rt.kill_task(manager, record, sig, all_processes=request.all)
            return empty_pb2.Empty()

        return await self._call(context, "Kill", work)

    async def Exec(self, request: pb.ExecProcessRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            if not request.exec_id:
                raise InvalidArgument("exec_id is required")
            process = from_any(request.spec, "exec's process spec")
            io = rt.TaskIO(stdin=request.stdin, stdout=request.stdout, stderr=request.stderr,
                           terminal=request.terminal)
            rt.add_exec(manager, record, request.exec_id, process, io)
            return empty_pb2.Empty()

        return await self._call(context, "Exec", work)

    async def ResizePty(self, request: pb.ResizePtyRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            if request.exec_id:
                rt.resize_exec(manager, record, request.exec_id, width=request.width, height=request.height)
            else:
                rt.resize_task(manager, record, width=request.width, height=request.height)
            return empty_pb2.Empty()

        return await self._call(context, "ResizePty", work)

    async def CloseIO(self, request: pb.CloseIORequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            # The process reads the client's FIFO itself: the client closing its end is the EOF.
            if request.exec_id:
                rt.exec_state(manager, record, request.exec_id)
            else:
                rt.task_state(manager, record)
            return empty_pb2.Empty()

        return await self._call(context, "CloseIO", work)

    async def Pause(self, request: pb.PauseTaskRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            rt.task_state(manager, record)
            manager.pause(record.id)
            self._journal(manager, "/tasks/paused", task_events.TaskPaused(container_id=record.id))
            return empty_pb2.Empty()

        return await self._call(context, "Pause", work)

    async def Resume(self, request: pb.ResumeTaskRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            rt.task_state(manager, record)
            manager.resume(record.id)
            self._journal(manager, "/tasks/resumed", task_events.TaskResumed(container_id=record.id))
            return empty_pb2.Empty()

        return await self._call(context, "Resume", work)

    async def ListPids(self, request: pb.ListPidsRequest, context: Context) -> pb.ListPidsResponse:
        def work(manager: ContainerManager) -> pb.ListPidsResponse:
            pids = rt.list_pids(manager, self._record(manager, request.container_id))
            return pb.ListPidsResponse(processes=[task_pb2.ProcessInfo(pid=pid) for pid in pids])

        return await self._call(context, "ListPids", work)

    async def Checkpoint(self, request: pb.CheckpointTaskRequest, context: Context) -> pb.CheckpointTaskResponse:
        def work(manager: ContainerManager) -> pb.CheckpointTaskResponse:
            raise Unimplemented("checkpointing a task is not supported")

        return await self._call(context, "Checkpoint", work)

    async def Update(self, request: pb.UpdateTaskRequest, context: Context) -> empty_pb2.Empty:
        def work(manager: ContainerManager) -> empty_pb2.Empty:
            record = self._record(manager, request.container_id)
            rt.task_state(manager, record)
            manager.runc_for(record).update(record.id, from_any(request.resources, "resources"))
            return empty_pb2.Empty()

        return await self._call(context, "Update", work)

    async def Metrics(self, request: pb.MetricsRequest, context: Context) -> pb.MetricsResponse:
        wanted = parse_filters(list(request.filters))

        def work(manager: ContainerManager) -> pb.MetricsResponse:
            reader = ContainerStatsReader.of(manager)
            out = []
            for record in manager.records.list():
                if not wanted.matches(labels_adaptor({"id": record.id}, dict(record.labels))):
                    continue
                if not rt.has_task(manager, record):
                    continue
                sample = reader.read(record, writable_layer=False).cgroup
                if sample is not None:
                    out.append(to_metric(record.id, sample))
            return pb.MetricsResponse(metrics=out)

        return await self._call(context, "Metrics", work)

    async def Wait(self, request: pb.WaitRequest, context: Context) -> pb.WaitResponse:
        async def work() -> pb.WaitResponse:
            manager = self._manager(namespace_of(context))

            def task(record: Container | None = None) -> tuple[Container, rt.ProcessState]:
                record = record or self._record(manager, request.container_id)
                return record, rt.task_state(manager, record)

            if request.exec_id:
                record = await self._deps.blocking(self._record, manager, request.container_id)
                state = await rt.wait_exec(manager, record, request.exec_id, self._deps.blocking)
            else:
                record, state = await self._deps.blocking(task)
                if state.state != EXITED:
                    await rt.wait_task(manager, record, self._deps.blocking)
                    _, state = await self._deps.blocking(task, record)
            return pb.WaitResponse(exit_status=state.exit_status, exited_at=_timestamp(state.exited_at))

        return await serve(context, "Wait", work())


METRICS_TYPE = "io.containerd.cgroups.v1.Metrics"


def to_metric(container_id: str, sample: Any) -> types_metrics_pb2.Metric:
    """A cgroup sample as containerd's cgroup v1 Metrics (what ``ctr tasks metrics`` prints)."""
    stats = cgroups_pb2.Metrics(
        pids=cgroups_pb2.PidsStat(current=sample.pids_current, limit=sample.pids_limit or 0),
        cpu=cgroups_pb2.CPUStat(usage=cgroups_pb2.CPUUsage(total=sample.cpu_usage_ns, kernel=sample.cpu_system_ns,
                                                           user=sample.cpu_user_ns)),
        memory=cgroups_pb2.MemoryStat(
            cache=sample.memory_cache, rss=sample.memory_rss, total_cache=sample.memory_cache,
            total_rss=sample.memory_rss,
            usage=cgroups_pb2.MemoryEntry(usage=sample.memory_usage, limit=sample.memory_limit or _UNLIMITED)),
        blkio=cgroups_pb2.BlkIOStat(io_service_bytes_recursive=[
            cgroups_pb2.BlkIOEntry(op="Read", value=sample.blkio_read_bytes),
            cgroups_pb2.BlkIOEntry(op="Write", value=sample.blkio_write_bytes)]))
    data = any_pb2.Any(type_url=METRICS_TYPE, value=stats.SerializeToString())
    return types_metrics_pb2.Metric(timestamp=_timestamp(sample.timestamp_ns / 1e9), id=container_id, data=data)


# What cgroup v1 reports as the limit of an unlimited cgroup (the largest page-aligned int64).
_UNLIMITED = 0x7FFFFFFFFFFFF000


__all__ = ["Tasks", "task_spec", "to_process"]
