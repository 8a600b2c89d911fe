"""The library root: ``Store`` opens one root/state pair and hands out the roles
the services share (content, metadata record stores, snapshotter, config,
locks, namespace) and the store's identity on the host."""

from __future__ import annotations

from hawser.store._store import LEASE_OWNER_PID, RESERVE_BYTES, Store, lease_owner_alive, with_cgroup_parent

__all__ = ["LEASE_OWNER_PID", "RESERVE_BYTES", "Store", "lease_owner_alive", "with_cgroup_parent"]
