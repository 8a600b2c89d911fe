"""runc's state.json read for ps without parsing the whole container config
(hawser.runtime._runc._state_fields): the same four fields a full parse gives."""

from __future__ import annotations

import json

import pytest

from hawser.runtime._runc import _state_fields


def _state(**overrides: object) -> dict[str, object]:
    state: dict[str, object] = {
        "id": "c1", "init_process_pid": 4242, "init_process_start": 987654,
        "created": "2026-12-08T00:00:00Z",
        "config": {"rootfs": "/b/rootfs", "mounts": [{"source": "/x", "data": 'tricky "init_process_pid":1'}],
                   "labels": ["bundle=/run/hawser/containers/c1", "other=\"quoted\" ]"],
                   "hooks": {"poststart": [{"args": ["bundle=/not/this", "]", "\"labels\":[1]"]}]}},
        "rootless": False,
        "cgroup_paths": {"memory": "/sys/fs/cgroup/memory/h/c1", "pids": "/sys/fs/cgroup/pids/h/c1"},
        "namespace_paths": {"NEWNET": "/proc/4242/ns/net"},
    }
    state.update(overrides)
    return state


@pytest.mark.parametrize("state", [
    _state(),
    _state(cgroup_paths=None),
    _state(config={"labels": None}),
    _state(config={"labels": ["a=b"]}),  # no bundle label
    _state(config={}),  # no labels at all: the whole file is parsed
])
def test_fields_equal_a_full_parse(state: dict[str, object]) -> None:
    raw = json.dumps(state, separators=(",", ":")).encode()
    config = state["config"]
    assert isinstance(config, dict)
    bundle = next((label.split("=", 1)[1] for label in config.get("labels") or () if label.startswith("bundle=")), "")
    assert _state_fields(raw) == (4242, 987654, state["cgroup_paths"] or {}, bundle)
