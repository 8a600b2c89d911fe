"""Tag: another name for a stored image, as ``ctr images tag`` makes one: a
new image record naming the same target descriptor, with the same labels."""

from __future__ import annotations

from hawser.errors import AlreadyExists
from hawser.oci import parse_reference
from hawser.store import Store

TAG = "tag"


def tag_image(store: Store, name: str, target: str, *, force: bool = False) -> str:
    """Record ``target`` (a reference, normalised as a pull names images) for the
    stored image ``name``; returns the new name.

    AlreadyExists when ``target`` names an image already, unless ``force``
    (which moves it).  InvalidArgument for a target that is not a reference,
    NotFound when ``name`` is not stored.  Idempotent with ``force`` only."""
    images = store.metadata.images
    record = images.get(name, namespace=store.namespace)
    new = str(parse_reference(target))
    if force:
        images.put(new, record.target, dict(record.labels), namespace=store.namespace)
        return new
    try:
        images.create(new, record.target, dict(record.labels), namespace=store.namespace)
    except AlreadyExists:
        current = images.get(new, namespace=store.namespace)
        same = " (the same image)" if current.target.digest == record.target.digest else ""
        raise AlreadyExists(f"image {new} exists already{same}", hint="--force moves the name to the image") from None
    return new
