"""Garbage-collecting the network state of pods that are gone (spec 1.1, as libcni does it).

A pod's network state can outlive the pod: a teardown that failed while its
pod was removed anyway (a failed RunPodSandbox's rollback deletes the pod's
record even when its DEL failed), a record removed while hawserd was down,
a plugin's own leak.  ``CNINetwork.gc`` is told which pods exist and then

1. DELs every recorded attachment of a pod that does not exist, with the
   config it was added with (the spec says GC is no substitute for DEL: a DEL
   frees what a GC cannot, and libcni does the same for stale cached
   attachments, so plugins of any spec version get this much);
2. for a network config of spec 1.1.0 or later (without ``disableGC``),
   runs each plugin of the network in use with ``CNI_COMMAND=GC`` and
   ``cni.dev/valid-attachments``: the (containerID, ifname) of every
   attachment recorded for an existing pod on that network, so the plugins
   can drop whatever else they hold (IPAM reservations, firewall rules).

hawserd does this once at start-up, after its pods are recovered and before
it serves: nothing is attached or detached meanwhile, so no pod being set up
can be missing from the list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hawser._dataclass import dataclass
from hawser.network._errors import PluginFailure

if TYPE_CHECKING:
    from hawser.network._manager import CNINetwork

log = logging.getLogger("hawser.network")

VALID_ATTACHMENTS = "cni.dev/valid-attachments"


@dataclass(frozen=True, slots=True)
class GCReport:
    """What one garbage collection did."""

    # "<pod id>:<network>:<ifname>" of each stale attachment DELeted
    deleted: tuple[str, ...] = ()
    # the network whose plugins got GC ("" when none did: no config, spec before 1.1.0, disableGC)
    network: str = ""
    # the (containerID, ifname) pairs that network's plugins were given
    valid: tuple[tuple[str, str], ...] = ()
    # every plugin failure, the stale DELs' and the GCs' (none stops the rest)
    failures: tuple[PluginFailure, ...] = ()


class StartupGC:
    """hawserd's start-up step for CNI (a daemon ``Recoverer``): garbage-collect
    with every pod ``live_pods`` names (a blocking call: the ids of every pod
    sandbox record, in every namespace).  Failures are logged, never raised:
    a plugin's GC trouble must not keep hawserd from serving.  When the pods
    cannot be listed nothing is collected (a DEL on a wrong list would detach
    live pods)."""

    def __init__(self, network: CNINetwork, live_pods: Callable[[], Iterable[str]]) -> None:
        self.network = network
        self.live_pods = live_pods

    async def recover(self) -> None:
        try:
            pods = await asyncio.to_thread(lambda: frozenset(self.live_pods()))
        except Exception as exc:
            log.warning("skipping CNI garbage collection: cannot list the pods: %s", exc)
            return
        try:
            await self.network.gc(pods)
        except Exception as exc:  # the cache dir unreadable, say: the next start tries again
            log.warning("CNI garbage collection failed: %s", exc)
