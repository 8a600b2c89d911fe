"""One stored layer blob applied to a snapshot directory: what the layer
pipeline does for a pull, for a caller that has the blob already (containerd's
Diff.Apply)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.content import ContentStore
    from hawser.images._apply import ApplyResult
    from hawser.oci import Digest
    from hawser.snapshots import ApplyTarget


def unpack_blob(content: ContentStore, digest: Digest, media_type: str, target: ApplyTarget) -> ApplyResult:
    """Apply the stored layer ``digest`` (of ``media_type``: tar, tar+gzip or
    tar+zstd, OCI or Docker) to ``target`` with the layer applier and its
    checks; its diff ID and size.  InvalidArgument for a media type that is
    not a layer or a hostile or corrupt layer; NotFound if the blob is not
    stored.  Blocking; leaves partial results for the caller to remove."""
    from hawser.errors import InvalidArgument
    from hawser.images._apply import apply_layer
    from hawser.images._decompress import open_decompressed
    from hawser.oci import media

    compression = media.layer_compression(media_type)
    if compression is None:
        raise InvalidArgument(f"{media_type!r} is not a layer media type",
                              hint="hawser applies OCI and Docker tar, tar+gzip and tar+zstd layers")
    with content.open(digest) as blob:
        return apply_layer(open_decompressed(blob, compression), target)  # type: ignore[arg-type]
