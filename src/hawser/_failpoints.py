"""Fault injection for tests: ``failpoint(name)`` marks a point where a crash
(or an error) is most dangerous, and ``HAWSER_FAILPOINTS`` makes it happen.

    HAWSER_FAILPOINTS="create.after-mount=kill,cni.add.after-plugin=raise@2"

A comma-separated list of ``point=action[@N]``.  Actions:

- ``kill``: SIGKILL to the own process, the real crash (nothing unwinds, no
  ``finally`` runs, locks and file descriptors die with the process);
- ``raise``: :class:`FailpointError` (an ``Unavailable``) is raised there, so
  the caller's rollback runs as for any error;
- ``sleep:SECONDS``: pause there (a test kills the process from outside, or
  races another command against it).

``@N`` fires on the Nth time this process reaches the point (counting from 1;
default 1), and only then: ``unpack.after-layer=kill@2`` dies after the
second layer.  Every firing first appends ``<point> <action> <pid>`` to the
file named by ``HAWSER_FAILPOINTS_LOG``, if set, so a test can tell a death
at the point from one elsewhere.  An unknown point or action is an
InvalidArgument at the first ``failpoint`` call.  Child processes inherit the
variable: the unpack workers never call ``failpoint``; hawserd's pull child
does (a ``pull.*`` kill there kills the child, not the daemon).

Unset, ``failpoint`` costs one global read and a truth test, and importing
this module imports nothing but ``hawser.errors``: it sits on ``hawser
run``'s start-up path.

The points: where each is, what a crash there leaves, and who cleans it.
"Next pull" means a pull of the same image (the pipeline resumes ingests,
skips committed snapshots); "GC" is ``hawser system prune`` (also run by
``hawser rmi``), which drops a dead process's lease first (its owner pid is
gone).  A ``raise`` leaves at most what a kill at the same point leaves
(the rollbacks undo some or all of it: a failed create leaves nothing).

====================================  ========================================  ==================================  ==============================
point                                 where (and the state there)               a crash there leaves                cleaned by
====================================  ========================================  ==================================  ==============================
pull.after-manifest                   images/_pull.py: manifest and config      a lease, nothing else               GC (abandoned lease)
                                      fetched, no layer yet
pull.after-layers                     images/_pull.py: every layer stored and   blobs and layer snapshots only the  next pull reuses them; else GC
                                      committed; config, manifest not           lease holds
pull.before-image-record              images/_store.py: every blob recorded,    a whole image without a name,       next pull; else GC
                                      no image record yet                       under the lease
pull.after-image-record               images/_store.py: image recorded, lease   a stale lease (the image is whole)  GC (abandoned lease)
                                      not yet deleted
unpack.before-commit                  images/_unpack.py: a layer applied to     an active extract-* snapshot named  GC (unreferenced snapshot)
                                      its extract-* snapshot, not committed     by the lease
unpack.after-layer                    images/_unpack.py: a layer's snapshot     committed layers without an image   next pull skips them; else GC
                                      committed (@N: the Nth layer)
content.commit.before-rename          content/_local.py: ingest verified and    a complete ingest                   next pull resumes it; else GC
                                      fsync'ed, not in blobs/ yet                                                   (stale ingest)
content.commit.after-rename           content/_local.py: blob renamed into      an ingest dir without data; a blob  next pull records the blob; GC
                                      blobs/, its ingest dir not removed        without a record                    the rest
snapshot.create.after-rename          snapshots/_store.py: new dir renamed to   an id dir without a row (the        GC (cleanup), or a create
                                      its id, before COMMIT                     INSERT rolls back)                  reusing the id
snapshot.commit.in-tx                 snapshots/_store.py: row updated to       the snapshot still active (rolled   as unpack.before-commit
                                      committed, before COMMIT                  back)
snapshot.commit.after-tx              snapshots/_store.py: commit done, before  as unpack.after-layer               as unpack.after-layer
                                      the caller goes on
snapshot.remove.in-tx                 snapshots/_store.py: row deleted, before  nothing (the DELETE rolls back)     nothing to clean
                                      COMMIT
snapshot.remove.after-commit          snapshots/_store.py: row deletion         an id dir without a row             GC (cleanup)
                                      committed, dir not yet renamed to rm-*
snapshot.remove.before-rmtree         snapshots/_store.py: dir renamed to       an rm-* dir                         GC (cleanup)
                                      rm-*, the tree not yet deleted
create.after-record                   runtime/_containers.py: container record  a record alone (ps: unknown)        hawser rm -f
                                      written, nothing else
create.after-mount                    runtime/_containers.py: snapshot          a record, bundle, snapshot, mount   hawser rm -f
                                      prepared and mounted, no spec yet
create.after-conmon                   runtime/_containers.py: conmon up and     a created container                 hawser start, or rm -f
                                      runc container created
start.before-runc                     runtime/_containers.py: started stamp     a created container                 hawser start, or rm -f
                                      written, runc start not run
start.after-runc                      runtime/_containers.py: runc start done,  a running container                 nothing to clean
                                      observers not told
stop.after-signal                     runtime/_containers.py: stop signal       a stopping or exited container      hawser stop again (idempotent)
                                      sent, exit not awaited
remove.after-kill                     runtime/_containers.py: SIGKILL sent to   an exited container, all its parts  hawser rm -f
                                      all, nothing removed yet
remove.after-runc-delete              runtime/_containers.py: runc state,       a record and a bundle dir (ps:      hawser rm -f
                                      conmon, mount, snapshot gone              unknown)
remove.before-record-delete           runtime/_containers.py: bundle and logs   a record alone (ps: unknown)        hawser rm -f
                                      removed, record not yet
cni.add.after-plugin                  network/_manager.py: one plugin's ADD     a cache entry without result; N     Stop/RemovePodSandbox (DEL of
                                      done (@N: the Nth of the chain)           plugins' veth, IP, rules            the cached chain)
cni.add.after-result                  network/_manager.py: result cached, pod   a whole attachment of a not-ready   Stop/RemovePodSandbox
                                      not yet marked ready                      pod
cni.del.after-plugin                  network/_manager.py: one plugin's DEL     the cache entry; the other          the next Stop/RemovePodSandbox
                                      done (@N: the Nth from the end)           plugins' state                      (DEL again)
sandbox.run.after-namespaces          cri/_sandboxes.py: pod record written,    a not-ready pod with pinned         Stop/RemovePodSandbox, or the
                                      namespaces pinned, no network             namespaces                          retried RunPodSandbox
sandbox.remove.before-record-delete   cri/_sandboxes.py: pod stopped and its    a not-ready pod record alone        RemovePodSandbox again
                                      files removed, record not yet
gc.after-records                      metadata/_gc.py: expired leases and       blob files without records          the next GC (orphan files)
                                      unmarked blob records deleted
gc.after-files                        metadata/_gc.py: blobs and ingests        unreferenced snapshots              the next GC
                                      swept, snapshots not yet
gc.after-snapshots                    metadata/_gc.py: snapshots swept, crash   leftover dirs (id dirs, rm-*,       the next GC
                                      leftovers not cleaned up                  new-*)
push.upload.after-chunk               registry/_upload.py: a chunk of a blob    nothing in the store; an upload     the registry's upload purging
                                      upload acknowledged (@N: the Nth, over    session in the registry (a          (a ``raise`` or ``sleep`` there:
                                      all blobs)                                next push starts anew)              this push resumes the session)
commit.paused                         images/_commit.py: the container paused,  a paused container (the caller's    the caller resumes it (a raise);
                                      its layer not yet read                    resume never runs)                  ``hawser unpause`` (a kill)
====================================  ========================================  ==================================  ==============================
"""

from __future__ import annotations

import os

from hawser.errors import InvalidArgument, Unavailable

ENV = "HAWSER_FAILPOINTS"
LOG_ENV = "HAWSER_FAILPOINTS_LOG"

POINTS = frozenset({
    "pull.after-manifest", "pull.after-layers", "pull.before-image-record", "pull.after-image-record",
    "unpack.before-commit", "unpack.after-layer",
    "content.commit.before-rename", "content.commit.after-rename",
    "snapshot.create.after-rename", "snapshot.commit.in-tx", "snapshot.commit.after-tx",
    "snapshot.remove.in-tx", "snapshot.remove.after-commit", "snapshot.remove.before-rmtree",
    "create.after-record", "create.after-mount", "create.after-conmon",
    "start.before-runc", "start.after-runc", "stop.after-signal",
    "remove.after-kill", "remove.after-runc-delete", "remove.before-record-delete",
    "cni.add.after-plugin", "cni.add.after-result", "cni.del.after-plugin",
    "sandbox.run.after-namespaces", "sandbox.remove.before-record-delete",
    "gc.after-records", "gc.after-files", "gc.after-snapshots",
    "push.upload.after-chunk",
    "commit.paused",
})


class FailpointError(Unavailable):
    """The error the ``raise`` action injects."""


# point -> (action, the hit that fires); None until the first call reads the environment.
_config: dict[str, tuple[str, int]] | None = None
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Act as ``HAWSER_FAILPOINTS`` says at the point ``name``; nothing when it is unset."""
    config = _config
    if config is None:
        config = _load()
    if config and name in config:
        _fire(name, config[name])


def _load() -> dict[str, tuple[str, int]]:
    global _config
    _config = parse(os.environ.get(ENV, ""))
    return _config


def reload() -> None:
    """Read ``HAWSER_FAILPOINTS`` again at the next call and forget the hit counts (for tests)."""
    global _config
    _config = None
    _hits.clear()


def parse(text: str) -> dict[str, tuple[str, int]]:
    """``point=action[@N],...`` as {point: (action, N)}. InvalidArgument for
    an unknown point or action, or a malformed entry."""
    config: dict[str, tuple[str, int]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, action = item.partition("=")
        name, action = name.strip(), action.strip()
        hit = 1
        if "@" in action:
            action, _, count = action.partition("@")
            if not count.isdigit() or int(count) < 1:
                raise InvalidArgument(f"{ENV}: {item!r}: the count after '@' must be a number from 1")
            hit = int(count)
        if not sep or name not in POINTS:
            raise InvalidArgument(f"{ENV}: {item!r}: unknown failpoint {name!r}",
                                  hint=f"known points: {', '.join(sorted(POINTS))}")
        if action not in ("kill", "raise") and not _is_sleep(action):
            raise InvalidArgument(f"{ENV}: {item!r}: unknown action {action!r}",
                                  hint="actions: kill, raise, sleep:SECONDS")
        config[name] = (action, hit)
    return config


def _is_sleep(action: str) -> bool:
    kind, _, seconds = action.partition(":")
    if kind != "sleep":
        return False
    try:
        return float(seconds) >= 0
    except ValueError:
        return False


def _fire(name: str, spec: tuple[str, int]) -> None:
    action, hit = spec
    count = _hits.get(name, 0) + 1
    _hits[name] = count
    if count != hit:
        return
    log = os.environ.get(LOG_ENV)
    if log:
        # One write with O_APPEND: whole lines even when several processes log at once.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{name} {action} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    if action == "kill":
        os.kill(os.getpid(), 9)  # SIGKILL, delivered before kill() returns
        os._exit(137)  # unreachable
    if action == "raise":
        raise FailpointError(f"injected failure at failpoint {name}", hint=f"{ENV} is set")
    import time

    time.sleep(float(action.partition(":")[2]))


__all__ = ["ENV", "LOG_ENV", "POINTS", "FailpointError", "failpoint", "parse", "reload"]
