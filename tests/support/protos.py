"""Building protobuf requests in tests."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message


def set_fields(message: Message, **fields: Any) -> None:
    """``a__b=value`` sets the nested field a.b of ``message``: lists extend,
    dicts update, messages are copied, scalars set."""
    for key, value in fields.items():
        target: Any = message
        *path, last = key.split("__")
        for part in path:
            target = getattr(target, part)
        attr = getattr(target, last)
        if isinstance(value, list):
            attr.extend(value)
        elif isinstance(value, dict):
            attr.update(value)
        elif hasattr(attr, "CopyFrom"):
            attr.CopyFrom(value)
        else:
            setattr(target, last, value)
