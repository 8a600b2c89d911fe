"""The attachment cache: round trip, atomic replacement, per-pod lookup."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from hawser.network._cache import CacheEntry, ResultCache

CONFIG = json.dumps({"cniVersion": "1.0.0", "name": "net", "disableCheck": False, "plugins": [{"type": "bridge"}]},
                    separators=(",", ":"))


def entry(pod_id: str = "pod-1", result: str | None = None, ifname: str = "eth0") -> CacheEntry:
    return CacheEntry(pod_id=pod_id, network="net", ifname=ifname, netns="/run/hawser/pod-1/net", config=CONFIG,
                      cni_args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")),
                      capability_args='{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]}',
                      result=result)


def test_round_trip(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path / "cache"))
    assert cache.entries("pod-1") == []  # no dir yet
    pending = entry()
    cache.write(pending)
    assert cache.entries("pod-1") == [pending]
    done = entry(result='{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}')
    cache.write(done)
    assert cache.entries("pod-1") == [done]
    assert os.listdir(tmp_path / "cache") == ["pod-1:net:eth0.json"]  # replaced in place, no temporaries
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    # human-readable on disk, nested JSON rather than escaped strings
    doc = json.loads((tmp_path / "cache" / "pod-1:net:eth0.json").read_text())
    assert doc["config"]["name"] == "net" and doc["result"]["ips"][0]["address"] == "10.0.0.2/24"


def test_entries_are_per_pod_and_interface(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    a, a2, b, prefix = entry("pod-1"), entry("pod-1", ifname="net1"), entry("pod-10"), entry("pod")
    for e in (a, a2, b, prefix):
        cache.write(e)
    assert cache.entries("pod-1") == [a, a2]
    assert cache.entries("pod-10") == [b]
    assert cache.entries("pod") == [prefix]
    cache.delete(a)
    cache.delete(a)  # idempotent
    assert cache.entries("pod-1") == [a2]


def test_unreadable_entries_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry())
    (tmp_path / "pod-1:other:eth0.json").write_text("{torn")
    (tmp_path / "pod-1:old:eth0.json").write_text('{"format": 99}')
    with caplog.at_level(logging.WARNING, logger="hawser.network"):
        assert cache.entries("pod-1") == [entry()]
    assert "pod-1:other:eth0.json" in caplog.text and "unknown cache format" in caplog.text


def test_a_failed_write_leaves_the_old_entry_and_no_temporary(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry())
    bad = CacheEntry(pod_id="pod-1", network="net", ifname="eth0", netns="", config="not json")
    with pytest.raises(ValueError):
        cache.write(bad)
    assert cache.entries("pod-1") == [entry()]
    assert os.listdir(tmp_path) == ["pod-1:net:eth0.json"]
