"""Small helpers for driving hawserd's CRI services in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from cri_api.v1 import api_pb2

from tests.support.images import BuiltImage, build_image
from tests.support.layers import LayerBuilder


def spec(image: str) -> api_pb2.ImageSpec:
    return api_pb2.ImageSpec(image=image)


def pull_request(image: str, **auth: str) -> api_pb2.PullImageRequest:
    request = api_pb2.PullImageRequest(image=spec(image))
    if auth:
        request.auth.CopyFrom(api_pb2.AuthConfig(**auth))
    return request


def status_code(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and message an RPC fails with (AssertionError if it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    raise AssertionError(f"{call} succeeded; an error was expected")


def small_image(text: str) -> BuiltImage:
    """A one-layer image whose content (and so whose ID) depends on ``text``."""
    layer = LayerBuilder().add_dir("etc").add_file("etc/hello.txt", text.encode()).build()
    return build_image([layer])
