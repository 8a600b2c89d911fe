"""The layer applier on hostile tar streams: random sequences of entries whose
names and link targets try every traversal and link trick, and raw garbage.

The contract (targets.layer): only HawserError comes out, nothing outside the
target directory changes, no device node or setuid file appears that the
layer did not declare.  Runs as any user; as root the owners, devices and
setuid modes are real."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import targets
from tests.support.layers import CHRTYPE, DIRTYPE, FIFOTYPE, LNKTYPE, REGTYPE, SYMTYPE, LayerBuilder, header

NAMES = st.sampled_from([
    "a", "a/b", "a/b/c", "./a", "/a", "a/", "a//b", "a/./b", "..", "../a", "a/../..", "a/../../outside/secret",
    "/../outside/secret", "escape", "escape/x", "link", "link/x", "link/../x", "dir/link", "dir/link/x", ".wh.a",
    "a/.wh.b", ".wh..wh..opq", "a/.wh..wh..opq", ".wh...", "a\x00b", "é", "d" * 120 + "/f", "./", ".", "",
    "root", "a/b/../c",
])
LINK_TARGETS = NAMES | st.sampled_from(["/", "/etc", "../../..", "../outside", "/proc/self/root", "a/b/../../..",
                                        "link/..", "../escape/secret"])
MODES = st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o6777, 0o1777, 0o000, 0o7777])


@st.composite
def entries(draw: st.DrawFn) -> bytes:
    builder = LayerBuilder()
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink", "char", "fifo", "whiteout", "opaque",
                                     "raw", "pax"]))
        name = draw(NAMES)
        mode = draw(MODES)
        if kind == "file":
            builder.add_file(name, draw(st.binary(max_size=40)), mode=mode, uid=draw(st.integers(0, 70000)))
        elif kind == "dir":
            builder.add_dir(name, mode=mode)
        elif kind == "symlink":
            builder.add_symlink(name, draw(LINK_TARGETS))
        elif kind == "hardlink":
            builder.add_hardlink(name, draw(LINK_TARGETS), mode=mode)
        elif kind == "char":
            major, minor = draw(st.sampled_from([(0, 0), (1, 3), (1, 5), (1, 7)]))
            builder.add_char(name, major, minor, mode=mode)
        elif kind == "fifo":
            builder.add_fifo(name, mode=mode)
        elif kind == "whiteout":
            builder.add_whiteout(name)
        elif kind == "opaque":
            builder.add_opaque(name)
        elif kind == "pax":
            key = draw(st.sampled_from(["path", "linkpath", "size", "mtime", "uid", "gid", "SCHILY.xattr.user.k",
                                        "SCHILY.xattr.trusted.overlay.opaque", "SCHILY.xattr.security.capability",
                                        "LIBARCHIVE.xattr.user.x", "GNU.sparse.map"]))
            value = draw(st.sampled_from([b"", b"0", b"-1", b"99999999999999999999", b"1.5", b"y", b"../x",
                                          b"/etc/passwd", b"a\x00b", b"\xff\xfe"]))
            builder.add_raw(name, type=draw(st.sampled_from([REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE])),
                            linkname=draw(LINK_TARGETS), pax={key: value}, force_pax=True)
        else:
            builder.add_bytes(header(draw(NAMES).encode(), type=draw(st.sampled_from(
                [REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE, CHRTYPE, FIFOTYPE, b"7", b"L", b"K", b"x", b"g", b"S", b"V",
                 b"\0", b"Z"])), size=draw(st.sampled_from([0, 1, 512, 2**33, -1])),
                mode=mode, mtime=draw(st.sampled_from([0, -1, 2**40, 2**63])),
                linkname=draw(LINK_TARGETS).encode(), checksum_delta=draw(st.sampled_from([0, 0, 0, 1]))))
    end = draw(st.booleans())
    return builder.build(end=end, trailing=draw(st.binary(max_size=600)) if draw(st.booleans()) else b"")


@given(entries())
def test_layer_full_tree(data: bytes) -> None:
    targets.layer(data)


@given(entries())
def test_layer_overlay_upper(data: bytes) -> None:
    targets.layer_overlay(data)


@given(st.binary(max_size=2048))
def test_layer_garbage(data: bytes) -> None:
    targets.layer(data)
