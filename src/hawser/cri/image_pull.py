"""PullImage: "pulls an image with authentication config" (cri-api api.proto).

Concurrent pulls of one image with the same credentials are merged into one
(CRI-O does so): kubelet pulling for several pods at once fetches each layer
once.  A pull whose every caller went away (kubelet's deadline, a cancelled
RPC) is stopped, as containerd's ends with its request's context.  The
request's AuthConfig applies to this pull only; nothing global changes, and
the secrets never reach a log line.  The answer's ``image_ref`` is the image
ID, as containerd's CRI plugin answers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from typing import TYPE_CHECKING

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps, PullKey
from hawser.errors import HawserError, InvalidArgument, Unimplemented, error_kind
from hawser.oci import parse_reference

if TYPE_CHECKING:
    from hawser.images import ImageService, ImageSummary, PullStats
    from hawser.registry import Credentials

log = logging.getLogger(__name__)


async def pull_image(deps: CriDeps, request: api_pb2.PullImageRequest) -> api_pb2.PullImageResponse:
    from hawser.registry import normalize_host

    spec = request.image
    if not spec.image:
        raise InvalidArgument("PullImage: no image given (image.image is empty)")
    deps.runtime_handler(spec.runtime_handler, call="PullImage")
    ref = parse_reference(spec.image)
    credentials = credentials_from(request.auth if request.HasField("auth") else None, registry=ref.domain)
    target = normalize_host(request.auth.server_address or ref.domain)
    key = PullKey(reference=str(ref), credentials=_fingerprint(credentials, target))

    async def pull() -> ImageSummary:
        start = time.monotonic()
        log.info("pull started", extra={"image": key.reference, "auth": credentials is not None})
        # In a process of its own, forked by the pull worker: the registry client's memory
        # leaves with it, and a crash takes only it down (see images._pull_worker).
        try:
            stats = await deps.pull_worker.pull(deps.images.config, key.reference, namespace=deps.images.namespace,
                                                credentials=credentials, registry=target)
        except HawserError as exc:
            await deps.blocking(deps.images.record_pull, key.reference, error=error_kind(exc))
            raise
        summary = await deps.blocking(_pulled, deps.images, key.reference, stats)
        log.info("pull done", extra={"image": key.reference, "id": str(summary.image_id),
                                     "duration": round(time.monotonic() - start, 3)})
        return summary

    summary, shared = await deps.pulls.run(key, pull)
    if shared:
        log.info("pull shared", extra={"image": key.reference})
    image_ref = str(summary.image_id or summary.target.digest)
    return api_pb2.PullImageResponse(image_ref=image_ref)


def _pulled(images: ImageService, reference: str, stats: PullStats | None) -> ImageSummary:
    """Tell the observers of the pull and read what it stored: one trip to a thread."""
    images.record_pull(reference, stats=stats)
    return images.summary(reference)


def credentials_from(auth: api_pb2.AuthConfig | None, *, registry: str) -> Credentials | None:
    """The Credentials an AuthConfig carries: username and password, ``auth``
    (base64 of ``user:password``, as in docker's config.json) or an identity
    (refresh) token.  None for an empty AuthConfig."""
    from hawser.registry import Credentials

    if auth is None:
        return None
    username, password = auth.username, auth.password
    if auth.auth:
        try:
            decoded = base64.b64decode(auth.auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument("PullImage: auth.auth is not base64 of user:password") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidArgument("PullImage: auth.auth is not base64 of user:password")
        username, password = user, secret
    if auth.registry_token and not (username or auth.identity_token):
        # A bearer token to send as it is: the registry client fetches its own tokens only.
        raise Unimplemented(f"PullImage: auth.registry_token is not supported yet (registry {registry})",
                            hint="pass username/password, auth or identity_token")
    if not (username or auth.identity_token):
        return None
    return Credentials(username=username, password=password, identity_token=auth.identity_token)


def _fingerprint(credentials: Credentials | None, target: str) -> str:
    if credentials is None:
        return ""
    text = "\0".join((target, credentials.username, credentials.password, credentials.identity_token))
    return hashlib.sha256(text.encode()).hexdigest()
