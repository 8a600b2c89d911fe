"""docker's detach keys (parsing, and finding them in the input as its escape
proxy does), and cp's walk and writer on plain directories: a path resolved
inside a root never leaves it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument, NotFound
from hawser.runtime import CopySide, copy_tree, extract_tar, open_source, parse_detach_keys, tar_entries
from hawser.runtime._attach import _DetachKeys


def test_detach_keys_parse_as_docker() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-x,e") == b"\x18e"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-_") == b"\x00\x1b\x1f"
    assert parse_detach_keys("") == b""
    for bad in ("ctrl-", "ctrl-pq", "alt-p", "ctrl-1"):
        with pytest.raises(InvalidArgument):
            parse_detach_keys(bad)


def test_detach_keys_are_held_back_then_passed_on() -> None:
    keys = _DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab") == (b"ab", False)
    assert keys.feed(b"a\x10") == (b"a", False)  # held: it may start the sequence
    assert keys.feed(b"x") == (b"\x10x", False)  # it did not
    assert keys.feed(b"\x10\x10") == (b"\x10", False)
    assert keys.feed(b"\x11rest") == (b"", True)
    assert _DetachKeys(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


def _root(tmp_path: Path) -> CopySide:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("container\n")
    return CopySide(os.open(root, os.O_PATH | os.O_DIRECTORY), label="c")


def test_paths_resolve_inside_the_root(tmp_path: Path) -> None:
    side = _root(tmp_path)
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("host\n")
    os.symlink(str(outside / "passwd"), root / "abs")
    os.symlink("../" * 10 + str(outside / "passwd").lstrip("/"), root / "rel")
    os.symlink(str(outside), root / "dir")
    os.symlink("/etc", root / "etc-link")
    dest = CopySide()
    try:
        for path in ("/abs", "rel", "/dir/passwd", "/../../" + str(outside / "passwd")):
            with pytest.raises(NotFound):
                copy_tree(open_source(side, path, follow=True), dest, str(tmp_path / "got"), keep_owner=False)
        assert not (tmp_path / "got").exists()
        copy_tree(open_source(side, "/etc-link/passwd", follow=False), dest, str(tmp_path / "got"), keep_owner=False)
        assert (tmp_path / "got").read_text() == "container\n"
        # Writing: through a link pointing out, nothing lands outside.
        (tmp_path / "payload").write_text("payload\n")
        with pytest.raises(NotFound):
            copy_tree(open_source(dest, str(tmp_path / "payload"), follow=False), side, "/dir/new", keep_owner=False)
        copy_tree(open_source(dest, str(tmp_path / "payload"), follow=False), side, "/abs", keep_owner=False)
        assert sorted(os.listdir(outside)) == ["passwd"] and (outside / "passwd").read_text() == "host\n"
        assert (root / "abs").read_text() == "payload\n" and not (root / "abs").is_symlink()
        # A tar's '..' and a link followed by a file through it are refused.
        for names in ((("..", None), ("../escape", b"x")), (("link", None), ("link/escape", b"x"))):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name, data in names:
                    info = tarfile.TarInfo(name)
                    if data is None:
                        info.type, info.linkname = tarfile.SYMTYPE, str(outside)
                        tar.addfile(info)
                    else:
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            buf.seek(0)
            with pytest.raises(InvalidArgument):
                extract_tar(tar_entries(buf), side, "/etc", keep_owner=False)
            assert sorted(os.listdir(outside)) == ["passwd"]
    finally:
        assert side.root_fd is not None
        os.close(side.root_fd)
