"""The content store: blobs addressed by their digest (after containerd's core/content).

The contract is split into small roles, each one to four methods, and a store is
the sum of them:

- ``Provider``: read committed blobs (``info``, ``open``, ``read_all``);
- ``Ingester``: start (or resume) writing one blob under a ``ref`` (``writer``);
- ``IngestManager``: look at and cancel writes in progress;
- ``Manager``: list, delete and measure committed blobs.

Optional abilities are their own Protocols (``Verifier``, ``PathProvider``,
``Cleaner``): callers that need them ask for them by type.

Labels on blobs are not kept here: they are metadata (``hawser.metadata``), per
namespace, recorded only after the blob is committed.  The store itself is shared
by every namespace and every hawser process on the host; ``flock`` on each
ingest keeps two processes from writing the same ref.
"""

from hawser.content._local import LocalStore
from hawser.content._types import (
    Cleaner,
    Info,
    Ingester,
    IngestManager,
    Manager,
    PathProvider,
    Provider,
    Status,
    Store,
    Verifier,
    Writer,
)

# The name hawser.images uses for the whole contract.
ContentStore = Store

__all__ = [
    "Cleaner", "ContentStore", "Info", "IngestManager", "Ingester", "LocalStore", "Manager", "PathProvider",
    "Provider", "Status", "Store", "Verifier", "Writer",
]
