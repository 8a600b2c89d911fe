"""The gRPC servicers of ``runtime.v1.RuntimeService`` and ``runtime.v1.ImageService``.

Each method hands its request to the handler module of its method group
(``image_pull.py``, ``runtime_status.py``, ...) through :func:`serve`, which
maps errors to status codes.  A handler takes what it needs from ``CriDeps``
(the image, container and pod services, the streaming server), built once by
``new_deps``; handlers share helpers through ``_containers.py`` and the
other ``_`` modules, never through each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from cri_api.v1 import api_pb2, api_pb2_grpc

from hawser.cri import (
    container_checkpoint,
    container_create,
    container_events,
    container_exec_sync,
    container_list,
    container_remove,
    container_reopen_log,
    container_start,
    container_stats,
    container_status,
    container_stop,
    container_update,
    image_fsinfo,
    image_list,
    image_pull,
    image_remove,
    image_status,
    metrics,
    runtime_config,
    runtime_status,
    runtime_version,
    sandbox_list,
    sandbox_remove,
    sandbox_run,
    sandbox_stats,
    sandbox_status,
    sandbox_stop,
    sandbox_update,
    stream_attach,
    stream_exec,
    stream_port_forward,
)
from hawser.cri._catalog import ImageCatalog
from hawser.cri._errors import serve
from hawser.cri._singleflight import SingleFlight
from hawser.cri.types import CriDeps
from hawser.runtime import ContainerStatsReader

if TYPE_CHECKING:
    import grpc

    from hawser import images
    from hawser.cri._stream_runtime import Streaming
    from hawser.cri.container_events import ExitWatcher, JournalTail, Locate
    from hawser.cri.types import NetworkStatus
    from hawser.events import Journal
    from hawser.pods import PodService, RunBlocking
    from hawser.runtime import ContainerManager

    Context = grpc.aio.ServicerContext[Any, Any]


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    """runtime.v1.RuntimeService."""

    def __init__(self, deps: CriDeps) -> None:
        self._deps = deps

    # --- runtime --------------------------------------------------------------

    async def Version(self, request: api_pb2.VersionRequest, context: Context) -> api_pb2.VersionResponse:
        return await serve(context, "Version", runtime_version.version(self._deps, request))

    # --- pod sandboxes (the lead's: sandbox_run.py, sandbox_stop.py, ...) -------------

    async def RunPodSandbox(
        self, request: api_pb2.RunPodSandboxRequest, context: Context
    ) -> api_pb2.RunPodSandboxResponse:
        return await serve(context, "RunPodSandbox", sandbox_run.run_pod_sandbox(self._deps, request))

    async def StopPodSandbox(
        self, request: api_pb2.StopPodSandboxRequest, context: Context
    ) -> api_pb2.StopPodSandboxResponse:
        return await serve(context, "StopPodSandbox", sandbox_stop.stop_pod_sandbox(self._deps, request))

    async def RemovePodSandbox(
        self, request: api_pb2.RemovePodSandboxRequest, context: Context
    ) -> api_pb2.RemovePodSandboxResponse:
        return await serve(context, "RemovePodSandbox", sandbox_remove.remove_pod_sandbox(self._deps, request))

    async def PodSandboxStatus(
        self, request: api_pb2.PodSandboxStatusRequest, context: Context
    ) -> api_pb2.PodSandboxStatusResponse:
        return await serve(context, "PodSandboxStatus", sandbox_status.pod_sandbox_status(self._deps, request))

    async def ListPodSandbox(
        self, request: api_pb2.ListPodSandboxRequest, context: Context
    ) -> api_pb2.ListPodSandboxResponse:
        return await serve(context, "ListPodSandbox", sandbox_list.list_pod_sandbox(self._deps, request))

    # --- containers -----------------------------------------------------------

    async def CreateContainer(
        self, request: api_pb2.CreateContainerRequest, context: Context
    ) -> api_pb2.CreateContainerResponse:
        return await serve(context, "CreateContainer", container_create.create_container(self._deps, request))

    async def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: Context
    ) -> api_pb2.StartContainerResponse:
        return await serve(context, "StartContainer", container_start.start_container(self._deps, request))

    async def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: Context
    ) -> api_pb2.StopContainerResponse:
        return await serve(context, "StopContainer", container_stop.stop_container(self._deps, request))

    async def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: Context
    ) -> api_pb2.RemoveContainerResponse:
        return await serve(context, "RemoveContainer", container_remove.remove_container(self._deps, request))

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: Context
    ) -> api_pb2.ListContainersResponse:
        return await serve(context, "ListContainers", container_list.list_containers(self._deps, request))

    async def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: Context
    ) -> api_pb2.ContainerStatusResponse:
        return await serve(context, "ContainerStatus", container_status.container_status(self._deps, request))

    async def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: Context
    ) -> api_pb2.UpdateContainerResourcesResponse:
        return await serve(context, "UpdateContainerResources", container_update.update_container_resources(self._deps, request))

    async def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: Context
    ) -> api_pb2.ReopenContainerLogResponse:
        return await serve(context, "ReopenContainerLog", container_reopen_log.reopen_container_log(self._deps, request))

    # --- exec, attach, port-forward (streaming URLs from cri/streaming) ---------

    async def ExecSync(self, request: api_pb2.ExecSyncRequest, context: Context) -> api_pb2.ExecSyncResponse:
        return await serve(context, "ExecSync", container_exec_sync.exec_sync(self._deps, request))

    async def Exec(self, request: api_pb2.ExecRequest, context: Context) -> api_pb2.ExecResponse:
        return await serve(context, "Exec", stream_exec.exec_stream(self._deps, request))

    async def Attach(self, request: api_pb2.AttachRequest, context: Context) -> api_pb2.AttachResponse:
        return await serve(context, "Attach", stream_attach.attach_stream(self._deps, request))

    async def PortForward(self, request: api_pb2.PortForwardRequest, context: Context) -> api_pb2.PortForwardResponse:
        return await serve(context, "PortForward", stream_port_forward.port_forward_stream(self._deps, request))

    # --- stats, events, metrics -------------------------------------------------

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: Context
    ) -> api_pb2.ContainerStatsResponse:
        return await serve(context, "ContainerStats", container_stats.container_stats(self._deps, request))

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: Context
    ) -> api_pb2.ListContainerStatsResponse:
        return await serve(context, "ListContainerStats", container_stats.list_container_stats(self._deps, request))

    async def PodSandboxStats(
        self, request: api_pb2.PodSandboxStatsRequest, context: Context
    ) -> api_pb2.PodSandboxStatsResponse:
        return await serve(context, "PodSandboxStats", sandbox_stats.pod_sandbox_stats(self._deps, request))

    async def ListPodSandboxStats(
        self, request: api_pb2.ListPodSandboxStatsRequest, context: Context
    ) -> api_pb2.ListPodSandboxStatsResponse:
        return await serve(context, "ListPodSandboxStats",
                           sandbox_stats.list_pod_sandbox_stats(self._deps, request))

    # --- runtime configuration --------------------------------------------------

    async def UpdateRuntimeConfig(
        self, request: api_pb2.UpdateRuntimeConfigRequest, context: Context
    ) -> api_pb2.UpdateRuntimeConfigResponse:
        return await serve(context, "UpdateRuntimeConfig", runtime_config.update_runtime_config(self._deps, request))

    async def Status(self, request: api_pb2.StatusRequest, context: Context) -> api_pb2.StatusResponse:
        return await serve(context, "Status", runtime_status.status(self._deps, request))

    async def CheckpointContainer(
        self, request: api_pb2.CheckpointContainerRequest, context: Context
    ) -> api_pb2.CheckpointContainerResponse:
        return await serve(context, "CheckpointContainer",
                           container_checkpoint.checkpoint_container(self._deps, request))

    async def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: Context
    ) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        async for event in container_events.get_container_events(self._deps, request, context):
            yield event

    async def ListMetricDescriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, context: Context
    ) -> api_pb2.ListMetricDescriptorsResponse:
        return await serve(context, "ListMetricDescriptors", metrics.list_metric_descriptors(self._deps, request))

    async def ListPodSandboxMetrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, context: Context
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        return await serve(context, "ListPodSandboxMetrics", metrics.list_pod_sandbox_metrics(self._deps, request))

    async def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: Context
    ) -> api_pb2.RuntimeConfigResponse:
        return await serve(context, "RuntimeConfig", runtime_config.runtime_config(self._deps, request))

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: Context
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        return await serve(context, "UpdatePodSandboxResources",
                           sandbox_update.update_pod_sandbox_resources(self._deps, request))


class ImageService(api_pb2_grpc.ImageServiceServicer):
    """runtime.v1.ImageService."""

    def __init__(self, deps: CriDeps) -> None:
        self._deps = deps

    async def ListImages(self, request: api_pb2.ListImagesRequest, context: Context) -> api_pb2.ListImagesResponse:
        return await serve(context, "ListImages", image_list.list_images(self._deps, request))

    async def ImageStatus(self, request: api_pb2.ImageStatusRequest, context: Context) -> api_pb2.ImageStatusResponse:
        return await serve(context, "ImageStatus", image_status.image_status(self._deps, request))

    async def PullImage(self, request: api_pb2.PullImageRequest, context: Context) -> api_pb2.PullImageResponse:
        return await serve(context, "PullImage", image_pull.pull_image(self._deps, request))

    async def RemoveImage(self, request: api_pb2.RemoveImageRequest, context: Context) -> api_pb2.RemoveImageResponse:
        return await serve(context, "RemoveImage", image_remove.remove_image(self._deps, request))

    async def ImageFsInfo(self, request: api_pb2.ImageFsInfoRequest, context: Context) -> api_pb2.ImageFsInfoResponse:
        return await serve(context, "ImageFsInfo", image_fsinfo.image_fs_info(self._deps, request))


def new_deps(*, images: images.ImageService, blocking: RunBlocking, network_status: NetworkStatus,
             effective_config: Mapping[str, Any], sandboxes: PodService | None = None,
             containers: ContainerManager | None = None, streaming: Streaming | None = None,
             journal: Journal | None = None, locate: Locate | None = None) -> CriDeps:
    """The handlers' dependencies over parts the daemon built; starts nothing.
    ``containers`` defaults to the sandboxes' manager; with a ``journal``,
    the container event hub reads its containers' events from it."""
    if containers is None and sandboxes is not None:
        containers = sandboxes.containers
    events = None
    stats = ContainerStatsReader()
    if containers is not None:
        if journal is not None:
            events = container_events.ContainerEvents(containers, sandboxes, journal, blocking=blocking,
                                                      locate=locate)
        stats = ContainerStatsReader.of(containers)
    return CriDeps(images=images, catalog=ImageCatalog(images), blocking=blocking, pulls=SingleFlight(),
                   network_status=network_status, effective_config=effective_config, sandboxes=sandboxes,
                   containers=containers, container_events=events, container_stats=stats, streaming=streaming)


def background_loops(deps: CriDeps) -> list[ExitWatcher | JournalTail]:
    """The loops the CRI services need the daemon to run (BackgroundLoop):
    the container exit watcher and the event journal's reader, when the
    daemon serves containers."""
    loops: list[ExitWatcher | JournalTail] = []
    if deps.containers is not None:
        locate = deps.container_events.locate if deps.container_events is not None else None
        loops.append(container_events.ExitWatcher(deps.containers, deps.blocking, locate=locate))
    if deps.container_events is not None:
        loops.append(container_events.JournalTail(deps.container_events))
    return loops


def add_to_server(server: grpc.aio.Server, deps: CriDeps) -> None:
    """Register both CRI services on ``server``."""
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(deps), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(deps), server)
