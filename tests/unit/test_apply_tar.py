"""The layer applier's stream side: tar parsing, decompression, the diff_id.

No root needed: entries are owned by the caller, whiteouts are native (delete)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.images._apply import apply_layer
from hawser.images._decompress import open_decompressed
from hawser.images._paths import normalise
from hawser.images._tar import _entries, _Stream
from hawser.snapshots import ApplyTarget
from tests.support.layers import BLOCK, DIRTYPE, LayerBuilder, gzip_compress, header, zstd_compress

UID, GID = os.getuid(), os.getgid()


def parse(tar: bytes) -> list[tuple[str, str, int, dict[str, bytes]]]:
    stream = _Stream(io.BytesIO(tar))
    out = []
    for e in _entries(stream):
        out.append((e.name, e.linkname, e.size, dict(e.pax)))
        stream.skip(e.size, e.name)
    return out


def apply(tar: bytes, root: Path) -> tuple[str, int]:
    result = apply_layer(io.BytesIO(tar), ApplyTarget(str(root), overlay_whiteouts=False), sync=False)
    return result.diff_id, result.size


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b", "a/b"), ("./a/b/", "a/b"), ("/abs/path", "abs/path"), ("a//b/./c", "a/b/c"), (".", ""), ("./", ""),
    ("a/../b", "b"), ("a/b/../../c", "c"), ("//x", "x"),
])
def test_normalise(name: str, expected: str) -> None:
    assert normalise(name) == expected


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "./../x", "a/b/../../../c", "/../x", "a\x00b"])
def test_normalise_rejects_escapes_and_nul(name: str) -> None:
    with pytest.raises(InvalidArgument):
        normalise(name)


def test_long_names_and_xattrs_in_pax_headers() -> None:
    long_dir = "d" * 90 + "/" + "e" * 90
    tar = (LayerBuilder()
           .add_file(f"{long_dir}/file", b"x", xattrs={"user.k": b"\x00\xffbinary"})
           .add_symlink("link", "t" * 300)
           .build())
    entries = parse(tar)
    assert entries[0][0] == f"{long_dir}/file"
    assert entries[0][3]["SCHILY.xattr.user.k"] == b"\x00\xffbinary"
    assert entries[1][1] == "t" * 300


def test_tarfile_gnu_and_pax_and_ustar_prefix_archives(tmp_path: Path) -> None:
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        name = "p" * 60 + "/" + "q" * 60 + "/file.txt"  # > 100 chars: GNU longname, PAX path or ustar prefix
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            for d in ("p" * 60, "p" * 60 + "/" + "q" * 60):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.uid, info.gid = UID, GID
                tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = 5
            info.mtime = 1_600_000_000
            info.uid, info.gid = UID, GID
            tar.addfile(info, io.BytesIO(b"hello"))
            if fmt != tarfile.USTAR_FORMAT:
                link = tarfile.TarInfo("l")
                link.type = tarfile.SYMTYPE
                link.linkname = "x" * 150  # GNU longlink or PAX linkpath
                link.uid, link.gid = UID, GID
                tar.addfile(link)
        root = tmp_path / f"fmt{fmt}"
        root.mkdir()
        diff_id, size = apply(buf.getvalue(), root)
        assert (root / name).read_bytes() == b"hello"
        assert (root / name).stat().st_mtime == 1_600_000_000
        assert diff_id == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
        assert size == len(buf.getvalue())
        if fmt != tarfile.USTAR_FORMAT:
            assert os.readlink(root / "l") == "x" * 150


def test_gnu_tar_archive_with_xattrs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "file").write_bytes(b"data" * 1000)
    os.link(src / "dir" / "file", src / "dir" / "hard")
    os.symlink("file", src / "dir" / "sym")
    os.setxattr(src / "dir" / "file", "user.tag", b"v")
    archive = subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "--format=posix", "-C", str(src),
                              "-cf", "-", "."], check=True, capture_output=True).stdout
    root = tmp_path / "root"
    root.mkdir()
    diff_id, _ = apply(archive, root)
    assert diff_id == "sha256:" + hashlib.sha256(archive).hexdigest()
    assert (root / "dir" / "file").read_bytes() == b"data" * 1000
    assert os.stat(root / "dir" / "hard").st_ino == os.stat(root / "dir" / "file").st_ino
    assert os.readlink(root / "dir" / "sym") == "file"
    assert os.getxattr(root / "dir" / "file", "user.tag") == b"v"
    assert (root / "dir" / "sub").is_dir()


def test_pax_times_owner_and_global_header() -> None:
    tar = (LayerBuilder()
           .add_raw("g", type=b"g", data=b"")  # an empty global header is allowed
           .add_raw("f", data=b"x", pax={"mtime": b"1700000000.5", "atime": b"1600000000.25", "uid": b"3000000000",
                                         "gid": b"7", "uname": b"ignored"})
           .build())
    stream = _Stream(io.BytesIO(tar))
    entries = []
    for e in _entries(stream):
        entries.append((e.mtime, e.atime, e.uid, e.gid))
        stream.skip(e.size, e.name)
    assert entries == [(1_700_000_000_500_000_000, 1_600_000_000_250_000_000, 3_000_000_000, 7)]


def test_global_pax_header_applies_to_later_entries() -> None:
    body = b"20 mtime=1234567890\n"
    tar = LayerBuilder().add_bytes(header(b"global", type=b"g", size=len(body)) + body.ljust(BLOCK, b"\0"))
    tar.add_file("a").add_file("b")
    stream = _Stream(io.BytesIO(tar.build()))
    times = []
    for e in _entries(stream):
        times.append(e.mtime)
        stream.skip(e.size, e.name)
    assert times == [1_234_567_890 * 10**9] * 2


def test_base256_numbers() -> None:
    tar = LayerBuilder().add_raw("big", uid=8**8 + 5, gid=8**8, mtime=-10).build()
    stream = _Stream(io.BytesIO(tar))
    (e,) = list(_entries(stream))
    assert (e.uid, e.gid, e.mtime) == (8**8 + 5, 8**8, -10 * 10**9)


def test_full_width_octal_field_without_terminator() -> None:
    block = bytearray(header(b"f", uid=0))
    block[108:116] = b"12345670"  # all eight digits, no NUL (Go's archive/tar does this)
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    stream = _Stream(io.BytesIO(bytes(block) + bytes(1024)))
    (e,) = list(_entries(stream))
    assert e.uid == 0o12345670


def test_bad_checksum_is_rejected(tmp_path: Path) -> None:
    tar = LayerBuilder().add_bytes(header(b"f", checksum_delta=1)).build()
    with pytest.raises(InvalidArgument, match="checksum"):
        apply(tar, tmp_path)


def test_not_a_tar_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        apply(os.urandom(4096), tmp_path)


def test_truncated_tar_is_rejected(tmp_path: Path) -> None:
    tar = LayerBuilder().add_file("f", b"x" * 5000, uid=UID, gid=GID).build()
    with pytest.raises(InvalidArgument, match="truncated"):
        apply(tar[: BLOCK + 3000], tmp_path)
    with pytest.raises(InvalidArgument, match="truncated"):
        apply(tar[:100], tmp_path)


def test_missing_end_marker_is_tolerated(tmp_path: Path) -> None:
    tar = LayerBuilder().add_file("f", b"x", uid=UID, gid=GID).build(end=False)
    apply(tar, tmp_path)
    assert (tmp_path / "f").read_bytes() == b"x"


def test_diff_id_covers_trailing_bytes(tmp_path: Path) -> None:
    # GNU tar pads to a 10 KiB record; bytes after the end marker count too.
    tar = LayerBuilder().add_file("f", b"x", uid=UID, gid=GID).build(trailing=b"\0" * 9000 + b"junk")
    diff_id, size = apply(tar, tmp_path)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert size == len(tar)


@pytest.mark.parametrize("kind", [b"S", b"V"])
def test_sparse_and_volume_entries_are_rejected(tmp_path: Path, kind: bytes) -> None:
    tar = LayerBuilder().add_raw("x", type=kind).build()
    with pytest.raises(InvalidArgument):
        apply(tar, tmp_path)


def test_pax_sparse_is_rejected(tmp_path: Path) -> None:
    tar = LayerBuilder().add_raw("x", pax={"GNU.sparse.major": b"1"}).build()
    with pytest.raises(InvalidArgument, match="sparse"):
        apply(tar, tmp_path)


def test_malformed_pax_is_rejected(tmp_path: Path) -> None:
    body = b"99 path=x\n"
    tar = LayerBuilder().add_bytes(header(b"pax", type=b"x", size=len(body)) + body.ljust(BLOCK, b"\0"))
    tar.add_file("f")
    with pytest.raises(InvalidArgument, match="PAX"):
        apply(tar.build(), tmp_path)


def test_old_style_directory_with_trailing_slash(tmp_path: Path) -> None:
    tar = LayerBuilder().add_raw("olddir/", type=b"\0", mode=0o750, uid=UID, gid=GID).build()
    apply(tar, tmp_path)
    assert (tmp_path / "olddir").is_dir()
    assert (tmp_path / "olddir").stat().st_mode & 0o7777 == 0o750


# --- decompression ---------------------------------------------------------------------


def _layer() -> bytes:
    b = LayerBuilder().add_dir("d", uid=UID, gid=GID)
    for i in range(50):
        b.add_file(f"d/f{i}", os.urandom(3000) + b"z" * 3000, uid=UID, gid=GID)
    return b.build(trailing=b"\0" * 4096)


@pytest.mark.parametrize(("compression", "compress"), [
    ("none", lambda d: d),
    ("gzip", lambda d: gzip_compress(d)),
    ("gzip", lambda d: gzip_compress(d, members=7)),
    ("zstd", lambda d: zstd_compress(d)),
    ("zstd", lambda d: zstd_compress(d, frames=5)),
])
def test_decompress_and_diff_id(tmp_path: Path, compression: str, compress: object) -> None:
    tar = _layer()
    blob = compress(tar)  # type: ignore[operator]
    stream = open_decompressed(io.BytesIO(blob), compression)  # type: ignore[arg-type]
    result = apply_layer(stream, ApplyTarget(str(tmp_path), overlay_whiteouts=False), sync=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.size == len(tar)
    assert result.entries == 51
    assert len(os.listdir(tmp_path / "d")) == 50


def test_corrupt_gzip_is_invalid(tmp_path: Path) -> None:
    blob = bytearray(gzip_compress(_layer()))
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 2 + 1] ^= 0xFF
    with pytest.raises(InvalidArgument, match="gzip"):
        apply_layer(open_decompressed(io.BytesIO(bytes(blob)), "gzip"),
                    ApplyTarget(str(tmp_path), overlay_whiteouts=False), sync=False)


def test_truncated_gzip_is_invalid(tmp_path: Path) -> None:
    blob = gzip_compress(_layer())
    with pytest.raises(InvalidArgument):
        apply_layer(open_decompressed(io.BytesIO(blob[:-20]), "gzip"),
                    ApplyTarget(str(tmp_path), overlay_whiteouts=False), sync=False)


def test_corrupt_zstd_is_invalid(tmp_path: Path) -> None:
    blob = bytearray(zstd_compress(_layer()))
    for i in range(20, 60):
        blob[i] ^= 0x5A
    with pytest.raises(InvalidArgument):
        apply_layer(open_decompressed(io.BytesIO(bytes(blob)), "zstd"),
                    ApplyTarget(str(tmp_path), overlay_whiteouts=False), sync=False)


def test_unknown_compression() -> None:
    with pytest.raises(InvalidArgument):
        open_decompressed(io.BytesIO(b""), "bzip2")  # type: ignore[arg-type]


def test_slow_stream_in_small_reads(tmp_path: Path) -> None:
    """A pipe hands out a few bytes at a time: headers and data straddle reads."""
    tar = _layer()

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            chunk = self._data.read(min(len(b), 777))
            b[: len(chunk)] = chunk
            return len(chunk)

    for compression, blob in (("none", tar), ("gzip", gzip_compress(tar, members=3)), ("zstd", zstd_compress(tar))):
        root = tmp_path / compression
        root.mkdir()
        stream = open_decompressed(Trickle(blob), compression)  # type: ignore[arg-type]
        result = apply_layer(stream, ApplyTarget(str(root), overlay_whiteouts=False), sync=False)
        assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_directory_entry_with_data_is_skipped(tmp_path: Path) -> None:
    tar = (LayerBuilder()
           .add_raw("d/", type=DIRTYPE, data=b"junk" * 200, uid=UID, gid=GID)
           .add_file("d/f", b"ok", uid=UID, gid=GID)
           .build())
    apply(tar, tmp_path)
    assert (tmp_path / "d" / "f").read_bytes() == b"ok"
