"""``hawser system check``: verify the store, find what crashes left, repair.

``check_store(store, repair=...)`` verifies every blob's digest, every
snapshot's parent chain and directory, every record's references (images,
containers, pods), and finds what no record owns (blobs, ingests, snapshot
directories, bundles, runc state, conmons, mounts, pinned namespaces,
cgroups).  It reports each as a ``Finding`` and keeps going past any error;
with ``repair`` it removes or rebuilds what it found, never anything a live
container, pod or lease holds, and never the whole store.

Areas, one module each: ``_content`` (blobs, ingests), ``_snapshots``,
``_records`` (images, containers, pods), ``_runtime`` (host leftovers).
What touches the host beyond the store's files goes through ``Host``
(``SystemHost`` in production, a fake in unit tests).
"""

from hawser.check._check import check_store
from hawser.check._host import SystemHost
from hawser.check._types import (
    ATTACH_DIR_ORPHAN,
    BLOB_CORRUPT,
    BLOB_MISSING,
    BLOB_ORPHAN,
    BLOB_UNRECORDED,
    BUNDLE_ORPHAN,
    CGROUP_ORPHAN,
    CHECK_ERROR,
    CONMON_ORPHAN,
    CONTAINER_SANDBOX_MISSING,
    CONTAINER_SNAPSHOT_MISSING,
    EXIT_FILE_ORPHAN,
    IMAGE_INCOMPLETE,
    INFO,
    INGEST_LEFTOVER,
    INGEST_STALE,
    LOG_DIR_ORPHAN,
    MOUNT_ORPHAN,
    NETNS_ORPHAN,
    POD_DIR_ORPHAN,
    PROBLEM,
    RUNC_ORPHAN,
    SANDBOX_NOT_READY,
    SNAPSHOT_DIR_MISSING,
    SNAPSHOT_ORPHAN_DIR,
    SNAPSHOT_PARENT_MISSING,
    SNAPSHOT_REF_MISSING,
    SNAPSHOT_UNREFERENCED,
    Finding,
    Host,
    MountPoint,
    Process,
    Report,
)

__all__ = [
    "ATTACH_DIR_ORPHAN", "BLOB_CORRUPT", "BLOB_MISSING", "BLOB_ORPHAN", "BLOB_UNRECORDED", "BUNDLE_ORPHAN",
    "CGROUP_ORPHAN", "CHECK_ERROR", "CONMON_ORPHAN", "CONTAINER_SANDBOX_MISSING", "CONTAINER_SNAPSHOT_MISSING",
    "EXIT_FILE_ORPHAN", "IMAGE_INCOMPLETE", "INFO", "INGEST_LEFTOVER", "INGEST_STALE", "LOG_DIR_ORPHAN",
    "MOUNT_ORPHAN", "NETNS_ORPHAN", "POD_DIR_ORPHAN", "PROBLEM", "RUNC_ORPHAN", "SANDBOX_NOT_READY",
    "SNAPSHOT_DIR_MISSING", "SNAPSHOT_ORPHAN_DIR", "SNAPSHOT_PARENT_MISSING", "SNAPSHOT_REF_MISSING",
    "SNAPSHOT_UNREFERENCED", "Finding",
    "Host", "MountPoint", "Process", "Report", "SystemHost", "check_store",
]
