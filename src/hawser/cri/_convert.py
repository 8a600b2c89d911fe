"""hawser objects to CRI messages."""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._catalog import CatalogImage, FsUsage


def cri_image(image: CatalogImage) -> api_pb2.Image:
    """The CRI Image kubelet expects: ID, every tag and digest reference, size,
    and the user the image runs as (a numeric ``uid``, or else a ``username``)."""
    message = api_pb2.Image(
        id=image.id, repo_tags=image.repo_tags, repo_digests=image.repo_digests, size=max(image.size, 1),
        spec=api_pb2.ImageSpec(image=image.id),
    )
    # "user[:group]": kubelet checks run_as_non_root against the uid or the name.
    user = image.user.partition(":")[0]
    if user.isdigit():
        message.uid.value = int(user)
    elif user:
        message.username = user
    return message


def filesystem_usage(usage: FsUsage) -> api_pb2.FilesystemUsage:
    return api_pb2.FilesystemUsage(
        timestamp=usage.timestamp_ns, fs_id=api_pb2.FilesystemIdentifier(mountpoint=usage.mountpoint),
        used_bytes=api_pb2.UInt64Value(value=usage.used_bytes),
        inodes_used=api_pb2.UInt64Value(value=usage.inodes_used),
    )
