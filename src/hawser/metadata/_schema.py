"""The metadata schema, as an ordered list of migrations.

``MIGRATIONS[i]`` takes the database from schema version ``i`` to ``i + 1``; each
step's statements run in one transaction together with the version bump, so a
step is applied whole or not at all.  Append only: never edit or reorder a step
that has been released, a database out there is already past it.

Adding a step is adding a tuple at the end; for a table that holds GC roots,
teach ``_gc._load`` and ``_gc._snapshot_claimed`` to read them (as for containers).
"""

from __future__ import annotations

from collections.abc import Sequence

Migration = Sequence[str]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: namespaces, images, blob records, leases.
    (
        """CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""",
        # Records refer to their namespace without ON DELETE: deleting a
        # namespace that still holds anything fails (FailedPrecondition).
        """CREATE TABLE images (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            name TEXT NOT NULL,
            media_type TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, name)
        )""",
        "CREATE INDEX images_by_digest ON images (digest)",
        """CREATE TABLE blobs (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            digest TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, digest)
        )""",
        "CREATE INDEX blobs_by_digest ON blobs (digest)",
        """CREATE TABLE leases (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            expires_at REAL,
            PRIMARY KEY (namespace, id)
        )""",
        """CREATE TABLE lease_resources (
            namespace TEXT NOT NULL,
            lease TEXT NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (namespace, lease, kind, key),
            FOREIGN KEY (namespace, lease) REFERENCES leases (namespace, id) ON DELETE CASCADE
        )""",
        # GC asks "does any live lease hold this?" per resource.
        "CREATE INDEX lease_resources_by_key ON lease_resources (kind, key)",
    ),
    # 2: containers. The snapshot is a GC root while the row exists; ``config``
    # is what the container was created with (JSON), for inspect and restart.
    (
        """CREATE TABLE containers (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            image TEXT NOT NULL,
            image_id TEXT NOT NULL,
            snapshotter TEXT NOT NULL,
            snapshot_key TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            PRIMARY KEY (namespace, id),
            UNIQUE (namespace, name)
        )""",
        "CREATE INDEX containers_by_snapshot ON containers (snapshotter, snapshot_key)",
    ),
    # 3: pod sandboxes (CRI). ``name`` is unique per namespace, so a retried
    # RunPodSandbox finds the pod it made; ``config`` is the request's pod config
    # (JSON); ``state`` is "ready" or "notready"; ``status`` holds what setup
    # learnt (IPs, pinned namespace paths, the infra pid).
    (
        """CREATE TABLE sandboxes (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            PRIMARY KEY (namespace, id),
            UNIQUE (namespace, name)
        )""",
    ),
    # 4: an image target's annotations (containerd's clients set and read them:
    # ``ctr images import`` names the image in io.containerd.image.name).
    ("ALTER TABLE images ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}'",),
)
