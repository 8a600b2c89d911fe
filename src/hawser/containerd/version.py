"""containerd.services.version.v1.Version: hawser's version, as ``ctr version`` shows it."""

from __future__ import annotations

from google.protobuf import empty_pb2

from hawser import __version__
from hawser.containerd._api.services.version.v1 import version_pb2 as pb
from hawser.containerd._api.services.version.v1 import version_pb2_grpc
from hawser.containerd._edge import Context

# No VCS at run time: the revision names the release.
REVISION = f"hawser-{__version__}"


class Version(version_pb2_grpc.VersionServicer):
    async def Version(self, request: empty_pb2.Empty, context: Context) -> pb.VersionResponse:
        return pb.VersionResponse(version=__version__, revision=REVISION)
