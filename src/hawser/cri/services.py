"""The gRPC servicers of ``runtime.v1.RuntimeService`` and ``runtime.v1.ImageService``.

Each method hands its request to the handler module of its method group
(``image_pull.py``, ``runtime_status.py``, ...) through :func:`serve`, which
maps errors to status codes.  Methods whose handlers are not written yet
answer UNIMPLEMENTED; to add one, write ``<resource>_<verb>.py`` beside the
others, route the method to it here, and add what it needs (the container
manager, the CNI manager, the streaming server) to ``CriDeps`` and ``new_deps``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from cri_api.v1 import api_pb2, api_pb2_grpc

from hawser.cri import (
    image_fsinfo,
    image_list,
    image_pull,
    image_remove,
    image_status,
    runtime_config,
    runtime_status,
    runtime_version,
    sandbox_list,
    sandbox_remove,
    sandbox_run,
    sandbox_stats,
    sandbox_status,
    sandbox_stop,
)
from hawser.cri._catalog import ImageCatalog
from hawser.cri._errors import serve, unimplemented
from hawser.cri._singleflight import SingleFlight
from hawser.cri.types import CriDeps

if TYPE_CHECKING:
    import grpc

    from hawser.cri._sandboxes import Sandboxes
    from hawser.cri.types import NetworkStatus, RunBlocking
    from hawser.images import ImageStore

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
        await unimplemented(context, "CreateContainer")

    async def StartContainer(
        self, request: api_pb2.StartContainerRequest, context: Context
    ) -> api_pb2.StartContainerResponse:
        await unimplemented(context, "StartContainer")

    async def StopContainer(
        self, request: api_pb2.StopContainerRequest, context: Context
    ) -> api_pb2.StopContainerResponse:
        await unimplemented(context, "StopContainer")

    async def RemoveContainer(
        self, request: api_pb2.RemoveContainerRequest, context: Context
    ) -> api_pb2.RemoveContainerResponse:
        await unimplemented(context, "RemoveContainer")

    async def ListContainers(
        self, request: api_pb2.ListContainersRequest, context: Context
    ) -> api_pb2.ListContainersResponse:
        await unimplemented(context, "ListContainers")

    async def ContainerStatus(
        self, request: api_pb2.ContainerStatusRequest, context: Context
    ) -> api_pb2.ContainerStatusResponse:
        await unimplemented(context, "ContainerStatus")

    async def UpdateContainerResources(
        self, request: api_pb2.UpdateContainerResourcesRequest, context: Context
    ) -> api_pb2.UpdateContainerResourcesResponse:
        await unimplemented(context, "UpdateContainerResources")

    async def ReopenContainerLog(
        self, request: api_pb2.ReopenContainerLogRequest, context: Context
    ) -> api_pb2.ReopenContainerLogResponse:
        await unimplemented(context, "ReopenContainerLog")

    # --- exec, attach, port-forward (streaming URLs from cri/streaming) ---------

    async def ExecSync(self, request: api_pb2.ExecSyncRequest, context: Context) -> api_pb2.ExecSyncResponse:
        await unimplemented(context, "ExecSync")

    async def Exec(self, request: api_pb2.ExecRequest, context: Context) -> api_pb2.ExecResponse:
        await unimplemented(context, "Exec")

    async def Attach(self, request: api_pb2.AttachRequest, context: Context) -> api_pb2.AttachResponse:
        await unimplemented(context, "Attach")

    async def PortForward(self, request: api_pb2.PortForwardRequest, context: Context) -> api_pb2.PortForwardResponse:
        await unimplemented(context, "PortForward")

    # --- stats, events, metrics -------------------------------------------------

    async def ContainerStats(
        self, request: api_pb2.ContainerStatsRequest, context: Context
    ) -> api_pb2.ContainerStatsResponse:
        await unimplemented(context, "ContainerStats")

    async def ListContainerStats(
        self, request: api_pb2.ListContainerStatsRequest, context: Context
    ) -> api_pb2.ListContainerStatsResponse:
        await unimplemented(context, "ListContainerStats")

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
        await unimplemented(context, "CheckpointContainer")

    async def GetContainerEvents(
        self, request: api_pb2.GetEventsRequest, context: Context
    ) -> AsyncIterator[api_pb2.ContainerEventResponse]:
        await unimplemented(context, "GetContainerEvents")
        yield api_pb2.ContainerEventResponse()  # unreachable: makes this an async generator

    async def ListMetricDescriptors(
        self, request: api_pb2.ListMetricDescriptorsRequest, context: Context
    ) -> api_pb2.ListMetricDescriptorsResponse:
        await unimplemented(context, "ListMetricDescriptors")

    async def ListPodSandboxMetrics(
        self, request: api_pb2.ListPodSandboxMetricsRequest, context: Context
    ) -> api_pb2.ListPodSandboxMetricsResponse:
        await unimplemented(context, "ListPodSandboxMetrics")

    async def RuntimeConfig(
        self, request: api_pb2.RuntimeConfigRequest, context: Context
    ) -> api_pb2.RuntimeConfigResponse:
        return await serve(context, "RuntimeConfig", runtime_config.runtime_config(self._deps, request))

    async def UpdatePodSandboxResources(
        self, request: api_pb2.UpdatePodSandboxResourcesRequest, context: Context
    ) -> api_pb2.UpdatePodSandboxResourcesResponse:
        await unimplemented(context, "UpdatePodSandboxResources")


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


def new_deps(*, store: ImageStore, blocking: RunBlocking, network_status: NetworkStatus,
             effective_config: Mapping[str, Any], sandboxes: Sandboxes | None = None) -> CriDeps:
    """The handlers' dependencies over parts the daemon built; starts nothing."""
    return CriDeps(store=store, catalog=ImageCatalog(store), blocking=blocking, pulls=SingleFlight(),
                   network_status=network_status, effective_config=effective_config, sandboxes=sandboxes)


def add_to_server(server: grpc.aio.Server, deps: CriDeps) -> None:
    """Register both CRI services on ``server``."""
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(deps), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(deps), server)
