"""atomic_write: content, mode, never overwriting when asked, and no temporary
file left behind when it fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.host import atomic_write, fsync_dir


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_writes_bytes_and_text_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    assert atomic_write(str(target), b"\x00bytes\xff") is True
    assert target.read_bytes() == b"\x00bytes\xff"
    assert atomic_write(str(target), "text: é") is True
    assert target.read_bytes() == "text: é".encode()
    assert atomic_write(str(target), b"", durable=False) is True
    assert target.read_bytes() == b""
    assert os.listdir(tmp_path) == ["f"]  # no temporaries


def test_a_large_write_is_whole(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    atomic_write(str(tmp_path / "big"), data)
    assert (tmp_path / "big").read_bytes() == data


def test_the_mode_is_exact_whatever_the_umask(tmp_path: Path, umask_077: None) -> None:
    atomic_write(str(tmp_path / "a"), b"x")
    assert (tmp_path / "a").stat().st_mode & 0o7777 == 0o644
    atomic_write(str(tmp_path / "b"), b"x", mode=0o600)
    assert (tmp_path / "b").stat().st_mode & 0o7777 == 0o600
    (tmp_path / "b").chmod(0o666)
    atomic_write(str(tmp_path / "b"), b"y", mode=0o640)  # the new file's mode, not the old one's
    assert (tmp_path / "b").stat().st_mode & 0o7777 == 0o640


def test_replace_false_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    assert atomic_write(str(target), b"first", replace=False) is True
    assert atomic_write(str(target), b"second", replace=False) is False
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["conf"]


def test_a_failed_rename_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(str(target), b"data")
    assert os.listdir(tmp_path) == ["taken"]
    assert (target / "inside").read_text() == "keep"


def test_a_failed_write_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(str(tmp_path / "old"), 42)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == ["old"]
    assert (tmp_path / "old").read_bytes() == b"old"


def test_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(str(tmp_path / "no" / "f"), b"x")
    assert os.listdir(tmp_path) == []


def test_fsync_dir(tmp_path: Path) -> None:
    fsync_dir(str(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        fsync_dir(str(tmp_path / "f"))
