"""check_store: run every area in order, under GC's lock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hawser.check._content import check_content
from hawser.check._context import Context, gc_lock
from hawser.check._records import check_records
from hawser.check._runtime import check_runtime
from hawser.check._snapshots import check_snapshots
from hawser.check._types import Host, Report

if TYPE_CHECKING:
    from hawser.store import Store

# In this order: a repair in one area is seen by the next (a corrupt blob
# removed, then the image using it reported as needing a pull; a broken
# snapshot removed, then the config label naming it dropped).
AREAS = (
    ("content", check_content),
    ("snapshots", check_snapshots),
    ("records", check_records),
    ("runtime", check_runtime),
)


def check_store(store: Store, *, repair: bool = False, host: Host | None = None, now: float | None = None,
                wait: bool = True) -> Report:
    """Check the store (and what its containers and pods left on the host);
    with ``repair``, fix what can be fixed. Never raises for what it finds, nor
    for an error in one part of the check (a ``check-error`` finding): it goes
    on and reports everything. Holds GC's lock throughout: waits for a running
    GC, or raises Unavailable with ``wait=False``. Anything a live lease holds,
    anything younger than GC's grace period, and every resource of a container
    or pod that has a record are left alone."""
    started = time.monotonic()
    if host is None:
        from hawser.check._host import SystemHost

        host = SystemHost(runc=store.config.runtime.runc)
    ctx = Context(store, host, repair=repair, now=store.metadata.clock() if now is None else now,
                  grace_period=store.config.gc.grace_period)
    with gc_lock(store.metadata.root, wait=wait):
        for name, area in AREAS:
            with ctx.guard(name):
                area(ctx)
    return Report(findings=tuple(ctx.findings), repair=repair, duration=time.monotonic() - started)
