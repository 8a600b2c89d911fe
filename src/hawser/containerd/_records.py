"""containerd's Container message and hawser's container records, both ways.

A container made through containerd's API is a hawser ``Container`` record
in the request's namespace: ``name`` is its id, ``image``, ``snapshotter``,
``snapshot_key`` and ``labels`` are the message's, ``image_id`` the image's
config digest when the service could find it (else ""), and the rest of the
message lives in ``config["containerd"]``, a JSON object::

    {"runtime": {"name": "io.containerd.runc.v2",
                 "options": {"type_url": ..., "value": <base64>} | null},
     "spec": <the OCI runtime spec, a JSON object>,
     "spec_type_url": "types.containerd.io/opencontainers/runtime-spec/1/Spec",
     "extensions": {name: {"type_url": ..., "value": <base64>}},
     "updated_at": <seconds>}

containerd marshals the spec Any as JSON, so it is kept decoded: the Tasks
service writes it as the bundle's config.json, and ``hawser inspect`` shows
it.  A record without that key is one hawser made itself (``hawser run`` or
``create``, the CRI): it is shown with runtime ``io.containerd.runc.v2`` and
its bundle's config.json as its spec, so ``ctr -n k8s.io containers info``
shows a CRI container's spec.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2

from hawser.containerd._api.services.containers.v1 import containers_pb2
from hawser.containerd._convert import timestamp
from hawser.errors import InvalidArgument
from hawser.metadata import Container, check_identifier

# The key of a record's config that holds what containerd's API gave.
CONFIG_KEY = "containerd"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
RUNC_V2 = "io.containerd.runc.v2"
# The runtimes a container may name: both run with runc (hawser has no shims).
RUNTIMES = (RUNC_V2, "io.containerd.runc.v1")


def any_to_json(message: any_pb2.Any) -> dict[str, str]:
    """An Any as the record keeps it: its type URL and its bytes in base64."""
    return {"type_url": message.type_url, "value": base64.b64encode(message.value).decode("ascii")}


def any_from_json(data: Mapping[str, Any]) -> any_pb2.Any:
    """An Any the record keeps (``any_to_json``) as the message it was."""
    try:
        value = base64.b64decode(str(data.get("value") or ""), validate=True)
    except (binascii.Error, ValueError):
        value = b""  # a record is written by any_to_json: this would be a hand-edited database
    return any_pb2.Any(type_url=str(data.get("type_url") or ""), value=value)


def check_runtime(name: str) -> str:
    """The runtime name a Create or Update may give. containerd itself
    records any name and fails only at task creation, when no shim of that
    name exists; hawser, which runs every container with runc and has no
    shims, refuses any other than ``io.containerd.runc.v2`` and ``.v1`` at
    once: InvalidArgument, naming the accepted ones. An empty name is
    containerd's own INVALID_ARGUMENT."""
    if not name:
        raise InvalidArgument("container.Runtime.Name must be set", hint=f"use {RUNC_V2}")
    if name not in RUNTIMES:
        raise InvalidArgument(f"runtime {name!r} is not supported: hawser runs containers with runc",
                              hint=f"use one of {', '.join(RUNTIMES)}")
    return name


def decode_spec(message: any_pb2.Any) -> dict[str, Any]:
    """The OCI runtime spec an Any carries (containerd marshals it as JSON).
    InvalidArgument when there is none or it is not a JSON object."""
    if not message.type_url and not message.value:
        raise InvalidArgument("container.Spec must be set", hint="send the OCI runtime spec as a JSON Any")
    try:
        spec = json.loads(message.value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"container.Spec ({message.type_url or 'no type'}) is not JSON: {exc}",
                              hint="send the OCI runtime spec marshalled as JSON, as containerd's typeurl does")\
            from None
    if not isinstance(spec, dict):
        raise InvalidArgument(f"container.Spec is a JSON {type(spec).__name__}, not an OCI runtime spec object")
    return spec


def encode_spec(spec: Mapping[str, Any], type_url: str = SPEC_TYPE_URL) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=json.dumps(spec, separators=(",", ":")).encode())


def extensions_to_json(extensions: Mapping[str, any_pb2.Any]) -> dict[str, dict[str, str]]:
    """A message's extensions as the record keeps them; InvalidArgument for
    an empty name, as containerd answers."""
    for name in extensions:
        if not name:
            raise InvalidArgument("container.Extension keys must not be zero-length")
    return {name: any_to_json(value) for name, value in sorted(extensions.items())}


def labels_of(labels: Mapping[str, str]) -> dict[str, str]:
    # As containerd writes labels: an empty value is no label.
    return {key: value for key, value in labels.items() if value}


def check_snapshot(snapshotter: str, snapshot_key: str) -> None:
    if snapshot_key and not snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")


def from_proto(namespace: str, c: containers_pb2.Container, now: float) -> Container:
    """The record a Create makes of ``c`` in ``namespace`` at time ``now``
    (``image_id`` left empty: the caller may fill it in). InvalidArgument as
    containerd's validation answers: an id that is not an identifier, no
    runtime name (or one hawser does not run: ``check_runtime``), no spec,
    a snapshot key without a snapshotter, an empty extension name."""
    try:
        check_identifier(c.id, "container id")
    except InvalidArgument as exc:
        what = "must not be empty" if not c.id else "must be letters and digits separated by '.', '_' or '-'"
        raise InvalidArgument(f"container.ID: identifier {c.id!r} {what}", hint=exc.hint) from None
    check_runtime(c.runtime.name)
    spec = decode_spec(c.spec) if c.HasField("spec") else decode_spec(any_pb2.Any())
    check_snapshot(c.snapshotter, c.snapshot_key)
    options = any_to_json(c.runtime.options) if c.runtime.HasField("options") else None
    config = {CONFIG_KEY: {
        "runtime": {"name": c.runtime.name, "options": options},
        "spec": spec,
        "spec_type_url": c.spec.type_url or SPEC_TYPE_URL,
        "extensions": extensions_to_json(c.extensions),
        "updated_at": now,
    }}
    return Container(namespace=namespace, id=c.id, name=c.id, image=c.image, image_id="",
                     snapshotter=c.snapshotter, snapshot_key=c.snapshot_key, config=config,
                     labels=labels_of(c.labels), created_at=now)


def api_config(record: Container) -> Mapping[str, Any] | None:
    """What containerd's API gave for this container, None for one hawser made."""
    data = record.config.get(CONFIG_KEY)
    return data if isinstance(data, Mapping) else None


def is_client_stdio(record: Container) -> bool:
    """Whether the container's task talks to its client's FIFOs (one made
    through containerd's API) rather than to a log hawser keeps."""
    return api_config(record) is not None


def runtime_name(record: Container) -> str:
    """The runtime the container names: ``io.containerd.runc.v2`` for one hawser made."""
    data = api_config(record)
    if data is None:
        return RUNC_V2
    return str((data.get("runtime") or {}).get("name") or RUNC_V2)


def oci_spec(record: Container, *, bundle: str | None = None) -> dict[str, Any] | None:
    """The container's OCI runtime spec: the one given through containerd's
    API, or for a container hawser made itself its bundle's config.json
    (``bundle``: its directory, ``ContainerManager.bundle(id)``); None when
    there is none (no bundle given, or it is gone)."""
    data = api_config(record)
    if data is not None:
        spec = data.get("spec")
        return dict(spec) if isinstance(spec, Mapping) else None
    if bundle is None:
        return None
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            loaded = json.load(f)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def updated_at(record: Container) -> float:
    data = api_config(record)
    if data is None:
        return record.created_at
    value = data.get("updated_at")
    return float(value) if isinstance(value, (int, float)) else record.created_at


def to_proto(record: Container, *, bundle: str | None = None) -> containers_pb2.Container:
    """The record as containerd's Container message (``bundle``: see ``oci_spec``)."""
    data = api_config(record) or {}
    runtime = containers_pb2.Container.Runtime(name=runtime_name(record))
    options = (data.get("runtime") or {}).get("options")
    if isinstance(options, Mapping):
        runtime.options.CopyFrom(any_from_json(options))
    message = containers_pb2.Container(
        id=record.id, labels=dict(record.labels), image=record.image, runtime=runtime,
        snapshotter=record.snapshotter, snapshot_key=record.snapshot_key,
        created_at=timestamp(record.created_at), updated_at=timestamp(updated_at(record)))
    spec = oci_spec(record, bundle=bundle)
    if spec is not None:
        message.spec.CopyFrom(encode_spec(spec, str(data.get("spec_type_url") or SPEC_TYPE_URL)))
    for name, value in (data.get("extensions") or {}).items():
        if isinstance(value, Mapping):
            message.extensions[name].CopyFrom(any_from_json(value))
    return message


__all__ = ["CONFIG_KEY", "RUNC_V2", "RUNTIMES", "SPEC_TYPE_URL", "any_from_json", "any_to_json", "api_config",
           "check_runtime", "check_snapshot", "decode_spec", "encode_spec", "extensions_to_json", "from_proto",
           "is_client_stdio", "labels_of", "oci_spec", "runtime_name", "to_proto", "updated_at"]
