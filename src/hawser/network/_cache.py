"""The on-disk record of each network attachment (what libcni calls its result cache).

One file per (pod id, network name, interface), written atomically *before*
the first ADD (config and arguments, no result yet) and again with the result
after the chain succeeded.  DEL reads it back, so a teardown after a daemon
restart, a crash in the middle of ADD, or a changed or emptied config dir
still runs with the exact config, capability arguments (portmap needs its
port mappings again to find its rules) and ``prevResult`` of the ADD.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from hawser._dataclass import dataclass
from hawser.host import atomic_write

log = logging.getLogger("hawser.network")

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class CacheEntry:
    pod_id: str
    network: str
    ifname: str
    netns: str
    config: str  # NetworkConfig.raw of the network ADD ran with
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: str = "{}"
    result: str | None = None  # the chain's final result; None until ADD completed

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": _FORMAT, "podId": self.pod_id, "network": self.network, "ifName": self.ifname,
            "netns": self.netns, "config": json.loads(self.config), "cniArgs": [list(a) for a in self.cni_args],
            "capabilityArgs": json.loads(self.capability_args),
            "result": None if self.result is None else json.loads(self.result),
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CacheEntry:
        """Raises ValueError (or KeyError/TypeError) on a malformed entry."""
        doc = json.loads(data)
        if doc.get("format") != _FORMAT:
            raise ValueError(f"unknown cache format {doc.get('format')!r}")

        def dump(obj: Any) -> str:
            return json.dumps(obj, separators=(",", ":"))

        args = tuple((str(k), str(v)) for k, v in doc["cniArgs"])
        return cls(pod_id=str(doc["podId"]), network=str(doc["network"]), ifname=str(doc["ifName"]),
                   netns=str(doc["netns"]), config=dump(doc["config"]), cni_args=args,
                   capability_args=dump(doc["capabilityArgs"]),
                   result=None if doc["result"] is None else dump(doc["result"]))


class ResultCache:
    """Cache entries under ``directory`` (created on first write, mode 0700).

    File names are ``<pod id>:<network>:<ifname>.json``: ':' is allowed in
    none of the three, so one pod's entries are found by their prefix.
    Blocking (fsync): call from a worker thread in async code.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, pod_id: str, network: str, ifname: str) -> str:
        return os.path.join(self.directory, f"{pod_id}:{network}:{ifname}.json")

    def write(self, entry: CacheEntry) -> None:
        """Atomically replace the entry (write, fsync, rename, fsync dir).  Raises OSError."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        atomic_write(self.path(entry.pod_id, entry.network, entry.ifname), entry.to_json(), mode=0o600)

    def entries(self, pod_id: str) -> list[CacheEntry]:
        """The pod's entries (none if the dir is missing).  A malformed entry is
        logged and skipped; OSError if the dir cannot be read."""
        return self._read(f"{pod_id}:")

    def all_entries(self) -> list[CacheEntry]:
        """Every pod's entries, as ``entries`` reads them (what GC walks)."""
        return self._read("")

    def _read(self, prefix: str) -> list[CacheEntry]:
        try:
            # dot files are atomic_write's temporaries and stand-in namespaces' dirs
            names = sorted(n for n in os.listdir(self.directory)
                           if n.startswith(prefix) and n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                with open(path, "rb") as f:
                    found.append(CacheEntry.from_json(f.read()))
            except FileNotFoundError:
                continue  # removed meanwhile
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable CNI cache entry %s: %s", path, exc)
        return found

    def delete(self, entry: CacheEntry) -> None:
        """Remove the entry.  Idempotent."""
        try:
            os.unlink(self.path(entry.pod_id, entry.network, entry.ifname))
        except FileNotFoundError:
            pass
