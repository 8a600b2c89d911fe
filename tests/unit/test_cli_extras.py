"""The pure parts of history, image prune, info and update: an image config's
history with its empty layers, docker's sizes and truncation, until= times."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hawser.cli._extras import docker_size, ellipsis, history_rows, info_json, until_time
from hawser.errors import InvalidArgument
from hawser.images import HistoryEntry, history_entries
from hawser.images._history import apparent_size


def test_docker_sizes_and_ellipsis() -> None:
    assert [docker_size(n) for n in (0, 123, 1234, 4_264_960, 999_999, 1_500_000_000)] == [
        "0B", "123B", "1.23kB", "4.26MB", "1000kB", "1.5GB"]
    assert ellipsis("short", 45) == "short"
    cut = ellipsis("x" * 50, 45)
    assert len(cut) == 45 and cut.endswith("…")


def test_history_entries_newest_first_with_empty_layers() -> None:
    config = json.dumps({"created": "2024-01-02T00:00:00Z", "history": [
        {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": True},
        {"created": "2024-01-01T00:00:02Z", "created_by": "RUN echo hi", "comment": "buildkit.dockerfile.v0"},
    ]}).encode()
    entries = history_entries(config, [4_000_000, 12])
    assert [(e.created_by, e.size, e.empty_layer) for e in entries] == [
        ("RUN echo hi", 12, False), ('/bin/sh -c #(nop)  CMD ["sh"]', 0, True),
        ("/bin/sh -c #(nop) ADD file:abc in /", 4_000_000, False)]
    assert entries[0].comment == "buildkit.dockerfile.v0"
    # No history: one row per layer, with the image's creation time.
    plain = history_entries(json.dumps({"created": "2024-01-02T00:00:00Z"}).encode(), [5, 7])
    assert [(e.size, e.created) for e in plain] == [(7, "2024-01-02T00:00:00Z"), (5, "2024-01-02T00:00:00Z")]
    with pytest.raises(InvalidArgument, match="history"):
        history_entries(b'{"history": {"x": 1}}', [])
    with pytest.raises(InvalidArgument, match="created_by"):
        history_entries(b'{"history": [{"created_by": 3}]}', [1])


def test_history_rows_as_docker_shows_them() -> None:
    image_id = "sha256:" + "ab" * 32
    now = time.time()
    entries = [HistoryEntry(created="", created_by="RUN " + "y" * 60, size=1234),
               HistoryEntry(created="2024-01-01T00:00:00Z", created_by="ADD\tx", size=0, empty_layer=True)]
    rows = history_rows(image_id, entries, no_trunc=False, human=True, now=now)
    assert [r["ID"] for r in rows] == ["abababababab", "<missing>"]
    assert rows[0]["CreatedSince"] == "N/A" and rows[1]["CreatedSince"].endswith(" ago")
    assert len(rows[0]["CreatedBy"]) == 45 and rows[0]["CreatedBy"].endswith("…")
    assert rows[1]["CreatedBy"] == "ADD x"
    assert [r["Size"] for r in rows] == ["1.23kB", "0B"]
    full = history_rows(image_id, entries, no_trunc=True, human=False, now=now)
    assert full[0]["ID"] == image_id and full[0]["CreatedBy"] == "RUN " + "y" * 60
    assert [r["Size"] for r in full] == ["1234", "0"]
    assert full[1]["CreatedSince"].startswith("2024-01-01T")


def test_until_times() -> None:
    now = 1_700_000_000.0
    assert until_time("1600000000", now) == 1_600_000_000.0
    assert until_time("24h", now) == now - 86400
    assert until_time("1h30m", now) == now - 5400
    assert until_time("2024-01-01T00:00:00Z", now) == 1_704_067_200.0
    with pytest.raises(InvalidArgument, match="until=soon"):
        until_time("soon", now)


def test_info_json_has_dockers_fields() -> None:
    report = {"version": "1.2.3", "objects": {"images": 2, "containers": 3},
              "storage": {"snapshotter": "overlayfs", "backing_filesystem": "ext4", "root": "/r"},
              "host": {"kernel": "6.1.0", "cgroup_version": 2}, "tools": {"runc": {"path": "/usr/sbin/runc"}}}
    data = info_json(report, store_id="f" * 32)
    assert (data["ServerVersion"], data["Images"], data["Containers"], data["Driver"]) == ("1.2.3", 2, 3, "overlayfs")
    assert data["CgroupVersion"] == "2" and data["DockerRootDir"] == "/r" and data["Hawser"] is report


def test_apparent_size_as_dockers_layer_size(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 1000)
    os.link(tmp_path / "d" / "a", tmp_path / "d" / "e" / "hard")  # one inode: counted once
    (tmp_path / "d" / "e" / "b").write_bytes(b"y" * 24)
    os.symlink("a", tmp_path / "d" / "link")  # the link itself: its target's length
    (tmp_path / "d" / "empty").write_bytes(b"")
    assert apparent_size(str(tmp_path / "d")) == 1000 + 24 + 1
