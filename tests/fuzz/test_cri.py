"""The CRI request validation on random messages: RunPodSandbox's pod_spec and
CreateContainer's option mapping (plan_container) raise HawserError or give a
plan, never another exception.

Messages are drawn field by field from their protobuf descriptors (every
field, nested messages a few levels deep, out-of-range enum values, hostile
strings), and also decoded from random bytes (targets.py)."""

from __future__ import annotations

from typing import Any

import pytest
from cri_api.v1 import api_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from hawser.cri._container_options import plan_container
from hawser.errors import InvalidArgument
from tests.fuzz import targets
from tests.support.cri_fakes import FakeFiles, make_sandbox

STRINGS = st.sampled_from(["", "a", "web", "ns", "u1", "a_b", "/", "/srv/data", "/etc/seccomp/app.json", "app.json",
                           "../../etc/shadow", "relative/path", "/var/log/../../etc", "runtime/default",
                           "unconfined", "localhost/app.json", "RuntimeDefault", "1000", "root", "0:0", "rwm", "xyz",
                           "/dev/fuse", "/dev/../etc/passwd", "SIGKILL", "é\x00", "a" * 300]) | st.text(max_size=12)
INTS = st.sampled_from([0, 1, -1, 2, 1000, 65535, 65536, 2**31 - 1, -(2**31), 4242])
INT64S = INTS | st.sampled_from([2**63 - 1, -(2**63), 2**40])
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_UINT64,
         FieldDescriptor.TYPE_FIXED64}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=16)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: a client may send a number no name stands for
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(-3, 40)
    if t in _INT32:
        return INTS
    if t in _UINT:
        return INTS.map(abs) if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32) else INT64S.map(abs)
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32)
    return INT64S


def message_dict(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """kwargs for the message ``desc``: any subset of its fields, with random values."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                optional[field.name] = st.dictionaries(_scalar(key_field), _scalar(value_field), max_size=3)
            continue
        if field.message_type is not None:
            if depth >= 4:
                continue
            value: st.SearchStrategy[Any] = message_dict(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        is_repeated = field.label == FieldDescriptor.LABEL_REPEATED
        optional[field.name] = st.lists(value, max_size=3) if is_repeated else value
    return st.fixed_dictionaries({}, optional=optional)


def _build(cls: type[Message], kwargs: dict[str, Any]) -> Message:
    return cls(**kwargs)


def messages(cls: type[Message], valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Serialised random ``cls`` messages: mostly with the ``valid`` fields (so the checks past them run), some
    without, some raw bytes."""
    drawn = message_dict(cls.DESCRIPTOR)
    kwargs = st.one_of(drawn.map(lambda kw: {**kw, **valid}), drawn.map(lambda kw: {**kw, **valid}), drawn)
    return kwargs.map(lambda kw: _build(cls, kw).SerializeToString()) | st.binary(max_size=200)


@given(messages(api_pb2.PodSandboxConfig, {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}))
def test_pod_sandbox_config(data: bytes) -> None:
    targets.pod_sandbox(data)


@given(messages(api_pb2.ContainerConfig, {"metadata": {"name": "app"}, "image": {"image": "127.0.0.1:5000/app:v1"}}))
def test_container_config(data: bytes) -> None:
    targets.container(data)


@pytest.mark.parametrize("signal", [-1, 66, 1000])
def test_unknown_stop_signal_is_invalid_argument(signal: int) -> None:
    # api_pb2.Signal.Name raised ValueError for a number the enum does not name.
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="app"),
                                     image=api_pb2.ImageSpec(image="127.0.0.1:5000/app:v1"), stop_signal=signal)
    with pytest.raises(InvalidArgument, match="unknown stop signal"):
        plan_container(config, make_sandbox(), files=FakeFiles())
