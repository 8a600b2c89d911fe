"""RemoveImage: "removes the image. This call is idempotent, and must not return
an error if the image has already been removed." (cri-api api.proto)

The image is found by tag, digest reference or ID, and every name it has goes
(containerd's CRI plugin does the same: kubelet removes images by ID); then the
store collects what no name holds any more.  A missing image is success.
"""

from __future__ import annotations

import logging

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument

log = logging.getLogger(__name__)


async def remove_image(deps: CriDeps, request: api_pb2.RemoveImageRequest) -> api_pb2.RemoveImageResponse:
    if not request.image.image:
        raise InvalidArgument("RemoveImage: no image given (image.image is empty)")
    deps.runtime_handler(request.image.runtime_handler, call="RemoveImage")
    image = await deps.blocking(deps.catalog.find, request.image.image)
    if image is None:
        log.debug("image already removed", extra={"image": request.image.image})
        return api_pb2.RemoveImageResponse()
    removed = await deps.blocking(deps.catalog.remove, image)
    log.info("image removed", extra={"image": request.image.image, "id": image.id, "names": ",".join(removed)})
    return api_pb2.RemoveImageResponse()
