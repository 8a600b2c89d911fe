"""A pull run in a child process, for hawserd.

The registry client (httpx, TLS contexts, h11, idna's tables) and the
decompression buffers of a pull cost the process that runs it some 15 MB that
stay after it: a long-lived daemon would carry them for good.  In a child they
go back to the kernel when it exits, and a codec that crashes on a hostile
layer takes only the child down.  The store is shared: the child commits the
image exactly as ``hawser pull`` would (leases protect its partial work if it
is killed), and the daemon reads the result from SQLite.

Protocol: the request is one JSON object on stdin (the Config, the reference,
optional credentials and the registry they are for); on success the child
writes ``{"stats": PullStats}`` (what the pull measured, ``PullStats.to_json``)
on stdout and exits 0, or writes ``{"kind", "message", "hint"}`` and exits 1.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from hawser import _dataclass as dataclasses
from hawser import errors
from hawser.host import run_process_async

if TYPE_CHECKING:
    from hawser.config import Config
    from hawser.images._events import ImageEvent, PullStats
    from hawser.registry import Credentials

# After SIGTERM (a cancelled pull), how long the child gets before SIGKILL.
TERM_GRACE = 5.0


async def pull_in_child(config: Config, reference: str, *, namespace: str, credentials: Credentials | None = None,
                        registry: str = "") -> PullStats | None:
    """Pull ``reference`` into ``namespace`` of the store of ``config`` in a child process;
    returns what the pull measured (None if the child did not say).
    ``credentials`` are offered to ``registry`` only (a normalised host).
    Raises the child's error kind (NotFound, PermissionDenied, ...); on
    cancellation the child is terminated and reaped."""
    request: dict[str, Any] = {"config": dataclasses.asdict(config), "reference": reference, "namespace": namespace}
    if credentials is not None:
        request["credentials"] = {"registry": registry, "username": credentials.username,
                                  "password": credentials.password,
                                  "identity_token": credentials.identity_token}
    # No timeout: the registry client's stall timeouts bound a pull, and its caller may cancel it.
    res = await run_process_async([sys.executable, "-m", "hawser.images._pull_process"],
                                  input=json.dumps(request).encode(), timeout=None, grace=TERM_GRACE)
    if res.returncode == 0:
        return _stats(res.stdout)
    raise _error(res.stdout, res.stderr, res.returncode)


def _stats(out: bytes) -> PullStats | None:
    """The stats on the child's last line of output; None if there are none
    (a pull's numbers are not worth failing it for)."""
    from hawser.images._events import PullStats

    lines = out.strip().splitlines()
    try:
        doc = json.loads(lines[-1]) if lines else None
        stats = doc.get("stats") if isinstance(doc, dict) else None
        return PullStats.from_json(stats) if isinstance(stats, dict) else None
    except (ValueError, TypeError, AttributeError):
        return None


def _error(out: bytes, err: bytes, returncode: int | None) -> errors.HawserError:
    try:
        doc = json.loads(out)
        kind = getattr(errors, str(doc["kind"]), None)
        if isinstance(kind, type) and issubclass(kind, errors.HawserError):
            return kind(str(doc["message"]), hint=doc.get("hint") or None)
    except (ValueError, KeyError, TypeError):
        pass
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    return errors.Internal(f"the pull process failed (exit status {returncode}): {' '.join(tail) or 'no message'}")


def _main() -> int:
    from hawser.config import config_from_dict
    from hawser.images import ImageService
    from hawser.store import Store

    request = json.load(sys.stdin)
    config = config_from_dict(request["config"])
    lookup = None
    if "credentials" in request:
        lookup = _lookup(request["credentials"])
    heard: list[ImageEvent] = []
    try:
        with Store.open(config, namespace=request["namespace"]) as store:
            images = ImageService(store)
            images.observers.append(heard.append)  # the pull's own event carries its stats
            images.pull(request["reference"], credentials=lookup)
    except errors.HawserError as exc:
        # The daemon re-raises the same kind: a subclass (CNIUnavailable...) goes as its base kind.
        kind = errors.error_kind(exc)
        json.dump({"kind": kind, "message": exc.message, "hint": exc.hint}, sys.stdout)
        return 1
    except OSError as exc:
        kind = "ResourceExhausted" if exc.errno == 28 else "Unavailable"
        json.dump({"kind": kind, "message": f"pull failed: {exc}", "hint": None}, sys.stdout)
        return 1
    stats = next((event.stats for event in heard if event.stats is not None), None)
    if stats is not None:
        json.dump({"stats": stats.to_json()}, sys.stdout)
    return 0


def _lookup(creds: dict[str, str]) -> Any:
    from hawser.registry import Credentials, normalize_host

    credentials = Credentials(username=creds["username"], password=creds["password"],
                              identity_token=creds["identity_token"])
    target = creds["registry"]

    def lookup(host: str) -> Credentials | None:
        return credentials if normalize_host(host) == target else None

    return lookup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind (leases, temp files) on SIGTERM
    os.umask(0o022)
    sys.exit(_main())
