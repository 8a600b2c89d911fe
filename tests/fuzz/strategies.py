"""Hypothesis strategies for hostile input: JSON and TOML near the valid shapes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=16)


def mutate(value: Any) -> st.SearchStrategy[Any]:
    """``value`` with any part kept, replaced by random JSON, or (in objects) dropped."""
    if isinstance(value, dict):
        keep = st.fixed_dictionaries({}, optional={k: mutate(v) for k, v in value.items()})
        extra = st.dictionaries(st.text(max_size=8), JSON, max_size=2)
        shaped = st.builds(lambda a, b: {**b, **a}, keep, extra)
        return st.one_of(shaped, st.just(value), JSON)
    if isinstance(value, list) and value:
        return st.one_of(st.lists(mutate(value[0]), max_size=4), st.just(value), JSON)
    return st.one_of(st.just(value), JSON)


def json_bytes(base: Any) -> st.SearchStrategy[bytes]:
    """Serialised mutations of ``base``, plus a few raw byte strings."""
    encoded = mutate(base).map(lambda v: json.dumps(v).encode())
    return st.one_of(encoded, encoded, encoded, st.binary(max_size=200))


TOML_VALUES = st.sampled_from([
    '1', '-5', '0', '99999999999999999999999', '1.5', 'inf', 'nan', '-inf', 'true', 'false', '"x"', '""',
    '"/abs/path"', '"rel"', '"10s"', '"1h"', '"-1s"', "'x'", '[]', '[1, "a"]', '["a", "b"]', '{}', '{a = 1}',
    '{ "X-Key" = "v" }', '{ "X-Key" = ["a", "b"] }', '1979-05-27T07:32:00Z', '07:32:00', '"\\u0000"', '[["a", "b"]]',
    '"overlayfs"', '"native"', '"https://mirror.example"', '"http://[::1]:5000/v2"', '["pull", "resolve", "push"]',
])


def toml_text(keys: list[str], tables: list[str]) -> st.SearchStrategy[str]:
    """TOML documents made of known keys and tables with random values (and some junk lines)."""
    line = st.one_of(
        st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(keys) | st.text(alphabet="abc_.\"-", min_size=1,
                                                                             max_size=6), TOML_VALUES),
        st.sampled_from(tables).map(lambda t: f"[{t}]"),
        st.text(max_size=20),
    )
    return st.lists(line, max_size=12).map("\n".join)
