"""The service edge in-process: hawserd's servicers on a real gRPC unix socket,
with a part that fails the way a bug does."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from typing import NoReturn

import grpc
import pytest
from cri_api.v1 import api_pb2, api_pb2_grpc

from hawser.cri._catalog import CatalogImage
from hawser.cri._singleflight import SingleFlight
from hawser.cri.services import add_to_server
from hawser.cri.types import CriDeps, NoNetwork
from hawser.daemon._daemon import Offloader
from hawser.errors import DataLoss


class BrokenCatalog:
    """find() fails with an exception no part raises on purpose; images() is fine."""

    def find(self, spec: str) -> NoReturn:
        raise KeyError(f"an invariant broke for {spec}")

    def images(self) -> list[CatalogImage]:
        return []

    def fs_info(self) -> NoReturn:
        raise DataLoss("content sha256:abc does not match its digest")


def test_a_bug_is_internal_and_the_server_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    directory = tempfile.mkdtemp(prefix="hawser-edge-")
    address = f"unix:{directory}/edge.sock"

    async def scenario() -> None:
        offloader = Offloader(max_workers=2)
        deps = CriDeps(images=None, catalog=BrokenCatalog(), blocking=offloader,  # type: ignore[arg-type]
                       pulls=SingleFlight(), network_status=NoNetwork("/nowhere"))
        server = grpc.aio.server()
        add_to_server(server, deps)
        server.add_insecure_port(address)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                images = api_pb2_grpc.ImageServiceStub(channel)
                request = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image="127.0.0.1:5000/a:1"))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await images.ImageStatus(request)
                assert info.value.code() == grpc.StatusCode.INTERNAL
                assert "KeyError" in (info.value.details() or "")
                # An error kind keeps its code.
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await images.ImageFsInfo(api_pb2.ImageFsInfoRequest())
                assert info.value.code() == grpc.StatusCode.DATA_LOSS
                # And the server still answers.
                assert not (await images.ListImages(api_pb2.ListImagesRequest())).images
                version = await api_pb2_grpc.RuntimeServiceStub(channel).Version(api_pb2.VersionRequest())
                assert version.runtime_name == "hawser"
        finally:
            await server.stop(None)
            await offloader.drain(5)

    try:
        with caplog.at_level(logging.INFO, logger="hawser.cri"):
            asyncio.run(scenario())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    bugs = [r for r in caplog.records if r.getMessage() == "request failed with a bug"]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None and isinstance(bugs[0].exc_info[1], KeyError)
    assert bugs[0].__dict__["method"] == "ImageStatus"
