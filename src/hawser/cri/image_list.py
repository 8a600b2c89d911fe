"""ListImages: "lists existing images" (cri-api api.proto).

The filter's image spec narrows the list to the one image it names (by tag,
digest reference or ID); a spec naming nothing gives an empty list.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._convert import cri_image
from hawser.cri.types import CriDeps


async def list_images(deps: CriDeps, request: api_pb2.ListImagesRequest) -> api_pb2.ListImagesResponse:
    deps.runtime_handler(request.filter.image.runtime_handler, call="ListImages")
    wanted = request.filter.image.image if request.HasField("filter") else ""
    if wanted:
        image = await deps.lookup(deps.catalog.find, wanted)
        images = [] if image is None else [image]
    else:
        images = await deps.lookup(deps.catalog.images)
    return api_pb2.ListImagesResponse(images=[cri_image(i) for i in images])
