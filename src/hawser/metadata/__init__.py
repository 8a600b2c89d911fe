"""Metadata: namespaced records in SQLite, one store per kind (namespaces, images,
blob records, containers, pod sandboxes, leases), and GC over them all.

Records are written only after what they describe is on disk; the garbage
collector (``collect``) removes what no image, lease or pin reaches.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports
from hawser.metadata._database import DEFAULT_BUSY_TIMEOUT, check_identifier, check_lease_id
from hawser.metadata._labels import (
    LABEL_GC_REF_CONTENT,
    LABEL_GC_REF_SNAPSHOT,
    LABEL_GC_ROOT,
    LABEL_REF_CONTENT,
    LABEL_REF_SNAPSHOT,
    RESOURCE_CONTENT,
    RESOURCE_INGEST,
    RESOURCE_SNAPSHOT_PREFIX,
    content_ref_label,
    content_refs,
    snapshot_ref_label,
    snapshot_refs,
    snapshot_resource,
)
from hawser.metadata._metadata import Metadata
from hawser.metadata._schema import MIGRATIONS, Migration
from hawser.metadata._types import (
    DEFAULT_NAMESPACE,
    Blob,
    BlobRecords,
    Container,
    ContainerRecords,
    Image,
    ImageRecords,
    Lease,
    LeaseManager,
    LeaseResource,
    Namespace,
    NamespaceStore,
    SandboxRecord,
    SandboxRecords,
)

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:

    from hawser.metadata._gc import (
        DEFAULT_GRACE_PERIOD,
        REASON_ABANDONED_LEASE,
        REASON_EXPIRED_LEASE,
        REASON_LEFTOVER,
        REASON_ORPHAN_FILE,
        REASON_STALE_INGEST,
        REASON_UNREFERENCED_BLOB,
        REASON_UNREFERENCED_SNAPSHOT,
        GCError,
        GCReport,
        Removal,
        collect,
    )

# Garbage collection loads on first use: only prune needs it, every command pays for an import.
_GC_NAMES = frozenset({
    "DEFAULT_GRACE_PERIOD", "REASON_ABANDONED_LEASE", "REASON_EXPIRED_LEASE", "REASON_LEFTOVER",
    "REASON_ORPHAN_FILE", "REASON_STALE_INGEST", "REASON_UNREFERENCED_BLOB", "REASON_UNREFERENCED_SNAPSHOT",
    "GCError", "GCReport", "Removal", "collect",
})


__getattr__ = lazy_exports(__name__, dict.fromkeys(_GC_NAMES, "_gc"))


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_NAMESPACE",
    "LABEL_GC_REF_CONTENT",
    "LABEL_GC_REF_SNAPSHOT",
    "LABEL_GC_ROOT",
    "LABEL_REF_CONTENT",
    "LABEL_REF_SNAPSHOT",
    "MIGRATIONS",
    "REASON_ABANDONED_LEASE",
    "REASON_EXPIRED_LEASE",
    "REASON_LEFTOVER",
    "REASON_ORPHAN_FILE",
    "REASON_STALE_INGEST",
    "REASON_UNREFERENCED_BLOB",
    "REASON_UNREFERENCED_SNAPSHOT",
    "RESOURCE_CONTENT",
    "RESOURCE_INGEST",
    "RESOURCE_SNAPSHOT_PREFIX",
    "Blob",
    "BlobRecords",
    "Container",
    "ContainerRecords",
    "GCError",
    "GCReport",
    "Image",
    "ImageRecords",
    "Lease",
    "LeaseManager",
    "LeaseResource",
    "Metadata",
    "Migration",
    "Namespace",
    "NamespaceStore",
    "Removal",
    "SandboxRecord",
    "SandboxRecords",
    "check_identifier",
    "check_lease_id",
    "collect",
    "content_ref_label",
    "content_refs",
    "snapshot_ref_label",
    "snapshot_refs",
    "snapshot_resource",
]
