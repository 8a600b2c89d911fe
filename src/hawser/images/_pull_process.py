"""A pull run in a process of its own, for hawserd.

The registry client (httpx, TLS contexts, h11, idna's tables) and the
decompression buffers of a pull cost the process that runs it some 15 MB that
stay after it: a long-lived daemon would carry them for good.  In a process of
its own they go back to the kernel when it exits, and a codec that crashes on
a hostile layer takes only that process down.  The store is shared: the
process commits the image exactly as ``hawser pull`` would (leases protect its
partial work if it is killed), and the daemon reads the result from SQLite.

hawserd forks its pulls from a long-lived pull worker (``_pull_worker.py``),
which has imported all this once; ``pull_in_child`` starts a fresh
interpreter for one pull (``python -m hawser.images._pull_process``).  Both
speak the same request and answer:

- the request is one JSON object: the Config, the reference, the namespace,
  optional credentials and the registry they are for (``pull_request``);
- the pull writes its answer on stdout and exits 0 with ``{"stats":
  PullStats}`` (what the pull measured, ``PullStats.to_json``), or 1 with
  ``{"kind", "message", "hint"}`` (``run_pull``);
- whoever waited for the process turns its exit status and output into the
  answer (``answer_of``: a death by a signal is an Unavailable), and the
  answer into stats or the same error kind (``outcome``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hawser import _dataclass as dataclasses
from hawser import errors
from hawser.host import run_process_async

if TYPE_CHECKING:
    from hawser.config import Config
    from hawser.images._events import ImageEvent, PullStats
    from hawser.registry import Credentials, RegistryClient
    from hawser.store import Store

# After SIGTERM (a cancelled pull), how long the pull's process gets before SIGKILL.
TERM_GRACE = 5.0
# How much of a failed pull process's stderr an error quotes (its last lines).
STDERR_LINES = 3

Answer = dict[str, Any]


async def pull_in_child(config: Config, reference: str, *, namespace: str, credentials: Credentials | None = None,
                        registry: str = "") -> PullStats | None:
    """Pull ``reference`` into ``namespace`` of the store of ``config`` in a child process;
    returns what the pull measured (None if the child did not say).
    ``credentials`` are offered to ``registry`` only (a normalised host).
    Raises the child's error kind (NotFound, PermissionDenied, ...), an
    Unavailable if it was killed; on cancellation the child is terminated
    and reaped."""
    request = pull_request(config, reference, namespace=namespace, credentials=credentials, registry=registry)
    # No timeout: the registry client's stall timeouts bound a pull, and its caller may cancel it.
    res = await run_process_async([sys.executable, "-m", "hawser.images._pull_process"],
                                  input=json.dumps(request).encode(), timeout=None, grace=TERM_GRACE)
    return outcome(answer_of(res.returncode, res.stdout, res.stderr), reference)


def pull_request(config: Config, reference: str, *, namespace: str, credentials: Credentials | None = None,
                 registry: str = "") -> dict[str, Any]:
    """The request for one pull, JSON-ready."""
    request: dict[str, Any] = {"config": dataclasses.asdict(config), "reference": reference, "namespace": namespace}
    if credentials is not None:
        request["credentials"] = {"registry": registry, "username": credentials.username,
                                  "password": credentials.password,
                                  "identity_token": credentials.identity_token}
    return request


def answer_of(returncode: int, out: bytes, err: bytes) -> Answer:
    """The answer of a pull process that ended with ``returncode`` (negative:
    the signal that killed it) after writing ``out`` and ``err``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return {"kind": "Unavailable", "message": f"the pull's process died (killed by {name})",
                "hint": "pull again: what it stored is kept, and the next pull resumes it"}
    doc = _last_object(out)
    if returncode == 0:
        # No stats (an empty or bad line) is no failure: a pull's numbers are not worth failing it for.
        stats = doc.get("stats") if doc is not None else None
        return {"stats": stats if isinstance(stats, dict) else None}
    if doc is not None and isinstance(doc.get("kind"), str) and isinstance(doc.get("message"), str):
        return {"kind": doc["kind"], "message": doc["message"], "hint": doc.get("hint") or None}
    tail = err.decode(errors="replace").strip().splitlines()[-STDERR_LINES:]
    return {"kind": "Internal",
            "message": f"the pull process failed (exit status {returncode}): {' '.join(tail) or 'no message'}"}


def _stats(out: bytes) -> PullStats | None:
    """The stats on the last line of a pull's output; None if there are none."""
    return outcome(answer_of(0, out, b""), "")


def _last_object(out: bytes) -> dict[str, Any] | None:
    lines = out.strip().splitlines()
    try:
        doc = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def outcome(answer: Mapping[str, Any], reference: str) -> PullStats | None:
    """The stats an answer carries (None: none were measured); raises the
    error kind it names (an unknown kind is an Internal)."""
    from hawser.images._events import PullStats

    if "kind" not in answer:
        stats = answer.get("stats")
        try:
            return PullStats.from_json(stats) if isinstance(stats, dict) else None
        except (ValueError, TypeError, AttributeError):
            return None
    kind = getattr(errors, str(answer["kind"]), None)
    message = str(answer.get("message") or f"the pull of {reference} failed")
    hint = answer.get("hint") or None
    if isinstance(kind, type) and issubclass(kind, errors.HawserError):
        raise kind(message, hint=hint)
    raise errors.Internal(f"{message} (error kind {answer['kind']!r})", hint=hint)


def run_pull(request: Mapping[str, Any]) -> tuple[int, Answer]:
    """Run the pull ``request`` asks for in this process: (exit status, answer).
    Error kinds and OSErrors are answers; anything else propagates (a bug)."""
    from hawser.config import config_from_dict
    from hawser.images._service import ImageService
    from hawser.store import Store

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
        return 1, {"kind": errors.error_kind(exc), "message": exc.message, "hint": exc.hint}
    except OSError as exc:
        kind = "ResourceExhausted" if exc.errno == 28 else "Unavailable"
        return 1, {"kind": kind, "message": f"pull failed: {exc}", "hint": None}
    stats = next((event.stats for event in heard if event.stats is not None), None)
    return 0, {"stats": stats.to_json() if stats is not None else None}


# What hawserd's pull worker's checker (``check_present``) keeps from one pull to the next, keyed by
# what they are made from; a few each (one store, a registry client per set of credentials, as a rule).
_KEEP_STORES = 2
_KEEP_CLIENTS = 4
_stores: dict[str, Store] = {}
_clients: dict[str, RegistryClient] = {}


def check_present(request: Mapping[str, Any]) -> Answer | None:
    """The answer to the pull ``request`` if it needs no pull: the reference,
    resolved at its registry now (as every pull does: a moved tag is a new
    image), names what the store holds whole already (``stored_whole``); or
    the resolve's error kind, as the pull would fail with it.  None: the pull
    must run (no image of that name, which the registry is not asked about:
    the pull asks; moved, partly gone, or anything unexpected here).

    Meant for a long-lived process (the pull worker's checker): the store and
    the registry clients (their pooled connections, their tokens while fresh)
    are kept for the next request, so an image already there costs one round
    trip to its registry and a few reads of the store."""
    from hawser.images._meter import RESOLVE, PullMeter
    from hawser.images._pull import stored_whole
    from hawser.oci import Platform, parse_reference

    meter = PullMeter()
    try:
        ref = parse_reference(request["reference"])
        store = _kept_store(request["config"], request["namespace"])
        client = _kept_client(store.config, request.get("credentials"))
        # No image of that name: the pull's own resolve is the only one (one round trip, not two).
        store.metadata.images.get(str(ref), namespace=store.namespace)
    except (errors.HawserError, OSError, KeyError, TypeError, ValueError):
        return None  # absent, or the pull meets it again and says so
    meter.begin(RESOLVE)
    try:
        resolved = client.resolve(ref)
    except errors.HawserError as exc:
        return {"kind": errors.error_kind(exc), "message": exc.message, "hint": exc.hint}
    meter.add_bytes(resolved.descriptor.size)
    meter.end(RESOLVE)
    if store.config.registry.policy:
        from hawser.images._policy import enforce_policy

        try:  # a present image is checked as a new one: the policy or its signatures may have changed
            enforce_policy(store.config.registry.policy, client, ref, resolved.descriptor)
        except errors.HawserError as exc:
            return {"kind": errors.error_kind(exc), "message": exc.message, "hint": exc.hint}
    layers = stored_whole(store, ref, resolved.descriptor, Platform.host())
    if layers is None:
        return None
    for _ in range(layers):
        meter.present()
    return {"stats": meter.stats().to_json()}


def _kept_store(config_doc: Mapping[str, Any], namespace: str) -> Store:
    from hawser.config import config_from_dict
    from hawser.store import Store

    key = json.dumps([config_doc, namespace], sort_keys=True)
    store = _stores.pop(key, None)
    if store is None:
        store = Store.open(config_from_dict(config_doc), namespace=namespace)
    _stores[key] = store  # the most recently used last
    while len(_stores) > _KEEP_STORES:
        _stores.pop(next(iter(_stores))).close()
    return store


def _kept_client(config: Config, creds: Mapping[str, str] | None) -> RegistryClient:
    from hawser.images._service import registry_options
    from hawser.registry import RegistryClient

    key = json.dumps([dataclasses.asdict(config.registry), creds], sort_keys=True)
    client = _clients.pop(key, None)
    if client is None:
        client = RegistryClient(registry_options(config, credentials=_lookup(creds) if creds else None))
    _clients[key] = client
    while len(_clients) > _KEEP_CLIENTS:
        _clients.pop(next(iter(_clients))).close()
    return client


def _lookup(creds: Mapping[str, str]) -> Any:
    from hawser.registry import Credentials, normalize_host

    credentials = Credentials(username=creds["username"], password=creds["password"],
                              identity_token=creds["identity_token"])
    target = creds["registry"]

    def lookup(host: str) -> Credentials | None:
        return credentials if normalize_host(host) == target else None

    return lookup


def _main() -> int:
    code, answer = run_pull(json.load(sys.stdin))
    json.dump(answer, sys.stdout)
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind (leases, temp files) on SIGTERM
    os.umask(0o022)
    sys.exit(_main())
