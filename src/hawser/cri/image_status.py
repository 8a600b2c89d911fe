"""ImageStatus: "returns the status of the image. If the image is not present,
returns a response with ImageStatusResponse.Image set to nil." (cri-api api.proto)

So a missing image is an empty answer, never NOT_FOUND.  With ``verbose`` the
``info`` map holds one JSON document under "info": the image's names, digests,
layer chain and its OCI config (``imageSpec``), as containerd's CRI plugin does.
"""

from __future__ import annotations

import json

from cri_api.v1 import api_pb2

from hawser.cri._catalog import CatalogImage
from hawser.cri._convert import cri_image
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound


async def image_status(deps: CriDeps, request: api_pb2.ImageStatusRequest) -> api_pb2.ImageStatusResponse:
    if not request.image.image:
        raise InvalidArgument("ImageStatus: no image given (image.image is empty)")
    deps.runtime_handler(request.image.runtime_handler, call="ImageStatus")
    image = await deps.lookup(deps.catalog.find, request.image.image)
    if image is None:
        return api_pb2.ImageStatusResponse()
    response = api_pb2.ImageStatusResponse(image=cri_image(image))
    if request.verbose:
        response.info["info"] = json.dumps(await deps.blocking(_verbose_info, deps, image))
    return response


def _verbose_info(deps: CriDeps, image: CatalogImage) -> dict[str, object]:
    try:
        config = deps.catalog.config_json(image)
    except NotFound:
        config = None
    return {
        "id": image.id, "names": list(image.names), "repoTags": list(image.repo_tags),
        "repoDigests": list(image.repo_digests), "manifestDigest": image.manifest_digest,
        "chainIDs": list(image.chain_ids), "size": image.size, "imageSpec": config,
    }
