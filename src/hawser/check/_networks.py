"""The network state a CLI container leaves without its record: its state
dir (pinned network namespace, hosts, resolv.conf), its endpoint and its CNI
attachment (``hawser.pods.ContainerNetworks``).  A record is written before
any of it exists, and ``rm`` undoes it before the record goes; what is left
without a record comes from a removal that did not detach it (a process
killed at the wrong time, a front end without the CLI's networking).  The
repair is ``ContainerNetworks.leave_id``: CNI DEL with the cached config
(iptables rules, IPAM lease, veth), unpin, files, peers' hosts files.
Listed before the records are read (see ``_runtime``)."""

from __future__ import annotations

from collections.abc import Collection

from hawser.check._context import Context, Resolved
from hawser.check._types import CONTAINER_NETWORK_ORPHAN


def list_container_networks(ctx: Context) -> list[str]:
    """Ids of containers with network state (call before reading the records)."""
    from hawser.pods import ContainerNetworks

    return ContainerNetworks.of(ctx.config).leftovers(())


def check_container_networks(ctx: Context, listed: Collection[str], containers: Collection[str]) -> None:
    from hawser.pods import ContainerNetworks

    networks = ContainerNetworks.of(ctx.config)
    for id_ in sorted(set(listed) - set(containers)):
        def step(id_: str = id_) -> None:
            with ctx.container_lock(id_):
                if _has_container(ctx, id_):
                    raise Resolved("its container exists now: kept")
                networks.leave_id(id_)

        with ctx.guard(f"network of {id_}"):
            ctx.report(CONTAINER_NETWORK_ORPHAN, id_,
                       f"the network state of container {id_[:12]} (pinned namespace, CNI attachment, hosts "
                       "files), which has no record (repair: CNI DEL, unpin, remove)", repair=step)


def _has_container(ctx: Context, id_: str) -> bool:
    return ctx.metadata.containers.find(id_) is not None


__all__ = ["check_container_networks", "list_container_networks"]
