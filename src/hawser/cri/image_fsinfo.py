"""ImageFsInfo: "returns information of the filesystem that is used to store images" (cri-api api.proto).

``image_filesystems``: the store's root, with the bytes and inodes of the
content store (blobs and ingests) and of the committed layer snapshots.
``container_filesystems``: the snapshotter's directory, with the containers'
writable layers.  Kubelet's image GC reads these.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._convert import filesystem_usage
from hawser.cri.types import CriDeps


async def image_fs_info(deps: CriDeps, request: api_pb2.ImageFsInfoRequest) -> api_pb2.ImageFsInfoResponse:
    del request  # it has no fields
    info = await deps.blocking(deps.catalog.fs_info)
    return api_pb2.ImageFsInfoResponse(image_filesystems=[filesystem_usage(info.images)],
                                       container_filesystems=[filesystem_usage(info.containers)])
