"""Volumes: docker's local volume driver for the CLI's containers.

A store keeps its volumes per namespace under
``root/volumes/<namespace>/<name>/``: ``_data`` is the mountpoint (what a
container binds), ``volume.json`` the metadata (name, created, labels,
options), written atomically after ``_data`` exists, so a crash leaves a
volume whole or a directory the next ``create`` of that name finishes.
``mounts`` turns docker's ``-v`` and ``--mount`` syntax into mount requests.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from hawser.volumes._mounts import (
        MountRequest,
        container_mounts,
        parse_mount,
        parse_volume,
        volume_names,
    )
    from hawser.volumes._store import (
        ANONYMOUS_LABEL,
        Volume,
        VolumeStore,
        check_volume_name,
        disk_usage,
        matches_labels,
        parse_volume_options,
    )

_LAZY = {
    "MountRequest": "_mounts", "container_mounts": "_mounts", "parse_mount": "_mounts", "parse_volume": "_mounts",
    "volume_names": "_mounts",
    "ANONYMOUS_LABEL": "_store", "Volume": "_store", "VolumeStore": "_store", "check_volume_name": "_store",
    "matches_labels": "_store", "disk_usage": "_store", "parse_volume_options": "_store",
}

__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = ["ANONYMOUS_LABEL", "MountRequest", "Volume", "VolumeStore", "check_volume_name", "container_mounts",
           "disk_usage", "matches_labels", "parse_mount", "parse_volume", "parse_volume_options", "volume_names"]
