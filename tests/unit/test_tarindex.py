"""The archive index (``images._tarindex``): what it finds, and what it refuses."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument, NotFound
from hawser.images._tarindex import TarIndex, open_archive
from tests.support.layers import LNKTYPE, SYMTYPE, LayerBuilder, header


@contextmanager
def _index(tmp_path: Path, data: bytes) -> Iterator[TarIndex]:
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield TarIndex(fd, "a.tar")
    finally:
        os.close(fd)


def test_entries_offsets_and_reads(tmp_path: Path) -> None:
    long_name = "blobs/sha256/" + "d" * 120  # a PAX path
    data = (LayerBuilder().add_dir("./blobs").add_file("./index.json", b"{}").add_file(long_name, b"x" * 3000)
            .add_symlink("link", "../x").build())
    with _index(tmp_path, data) as index:
        assert sorted(index.entries) == ["blobs/sha256/" + "d" * 120, "index.json", "link"]
        assert index.read("index.json", 10) == b"{}"
        assert b"".join(index.chunks(index.file(long_name), 2990)) == b"x" * 10
        assert index.get("link") is not None and index.file("index.json").kind() == "a file"
        with pytest.raises(InvalidArgument, match="over the 1 byte limit"):
            index.read("index.json", 1)
        with pytest.raises(NotFound, match="missing from the archive"):
            index.file("blobs/nothing")
        with pytest.raises(InvalidArgument, match=r"link is a symlink \(to '../x'\), not a file"):
            index.file("link")


def test_tarfile_archives_read_the_same(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("x/" + "n" * 150)  # a GNU long name
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with _index(tmp_path, buf.getvalue()) as index:
        assert index.read("x/" + "n" * 150, 100) == b"hello"


@pytest.mark.parametrize(("data", "message"), [
    (LayerBuilder().add_file("../up", b"x").build(), "climbs out of the archive"),
    (LayerBuilder().add_file("a/../../up", b"x").build(), "climbs out of the archive"),
    (LayerBuilder().add_file("/abs", b"x").build(), "has an absolute path"),
    (LayerBuilder().add_file("a", b"1").add_file("./a", b"2").build(), "two entries named 'a'"),
    (LayerBuilder().add_bytes(header(b"big", size=1 << 33)).build(), "past the end of the archive"),
    (LayerBuilder().add_bytes(header(b"big", checksum_delta=1)).build(), "is not a tar archive"),
    (LayerBuilder().add_file("a", b"1").add_bytes(header(b"b", checksum_delta=1)).build(), "corrupt tar header"),
    (LayerBuilder().add_bytes(header(b"PaxHeaders/x", type=b"x", size=2 << 20)).add_bytes(bytes(2 << 20)).build(),
     "metadata record"),
    (LayerBuilder().add_raw("s", pax={"GNU.sparse.size": b"1"}).build(), "sparse file"),
    (LayerBuilder().add_file("a", b"x" * 600).build()[:700], "past the end of the archive"),
])
def test_hostile_archives(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message), _index(tmp_path, data):
        pass


def test_links_are_only_noted(tmp_path: Path) -> None:
    data = (LayerBuilder().add_raw("h", type=LNKTYPE, linkname="/etc/shadow")
            .add_raw("s", type=SYMTYPE, linkname="/etc/shadow").build())
    with _index(tmp_path, data) as index:
        for name, kind in (("h", "hardlink"), ("s", "symlink")):
            with pytest.raises(InvalidArgument, match=f"is a {kind}"):
                index.read(name, 100)


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, lzma.compress])
def test_open_archive_reads_files_pipes_and_compressed(tmp_path: Path, compress: object) -> None:
    data = LayerBuilder().add_file("index.json", b"{}").build()
    path = tmp_path / "a.tar"
    path.write_bytes(compress(data))  # type: ignore[operator]
    with open_archive(str(path), spool_dir=str(tmp_path)) as index:
        assert index.read("index.json", 10) == b"{}"
    read, write = os.pipe()
    os.write(write, compress(data))  # type: ignore[operator]
    os.close(write)
    try:
        with open_archive(f"/proc/self/fd/{read}", spool_dir=str(tmp_path)) as index:
            assert index.read("index.json", 10) == b"{}"
    finally:
        os.close(read)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]  # the spool had no name


def test_open_archive_refuses(tmp_path: Path) -> None:
    with pytest.raises(NotFound), open_archive(str(tmp_path / "nothing"), spool_dir=str(tmp_path)):
        pass
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"x" * 100000)[:-50])
    with pytest.raises(InvalidArgument, match="corrupt gzip stream"), \
            open_archive(str(tmp_path / "bad.gz"), spool_dir=str(tmp_path)):
        pass
