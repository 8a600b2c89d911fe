"""The layer applier's tree side without root: whiteouts and opaque dirs on a
full tree (native), replacements, and hostile layers (in both modes) being
rejected with nothing written outside the target."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.images._apply import ApplyResult, LowerNeeded, apply_layer
from hawser.images._lowers import check_implicit_dirs
from hawser.snapshots import ApplyTarget
from tests.support.layers import LNKTYPE, SYMTYPE, LayerBuilder

UID, GID = os.getuid(), os.getgid()
OWN = {"uid": UID, "gid": GID}


def L() -> LayerBuilder:
    return LayerBuilder()


def apply(tar: bytes, root: Path, *, overlay: bool = False, lowers: tuple[str, ...] = (),
          parent_pending: bool = False) -> ApplyResult:
    return apply_layer(io.BytesIO(tar), ApplyTarget(str(root), overlay_whiteouts=overlay, lowers=lowers),
                       parent_pending=parent_pending, sync=False)


def tree(root: Path) -> dict[str, str]:
    """Every path under root with its type and content, for equality checks."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = "file " + p.read_bytes().decode(errors="replace")
    return out


# --- sentinel: a directory beside the target that hostile layers aim at ------------


def _state(path: Path) -> dict[str, tuple[int, int, int, str]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(p.relative_to(path))] = (st.st_mode, st.st_nlink, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(target root, sentinel dir); asserts afterwards that the sentinel and
    the arena around the target are untouched."""
    root = tmp_path / "arena" / "root"
    root.mkdir(parents=True)
    sentinel = tmp_path / "arena" / "outside"
    sentinel.mkdir()
    (sentinel / "secret").write_bytes(b"do not touch")
    before = _state(sentinel)
    yield root, sentinel
    assert _state(sentinel) == before, "a hostile layer changed the sentinel directory"
    assert sorted(os.listdir(tmp_path / "arena")) == ["outside", "root"]
    assert sorted(os.listdir(tmp_path)) == ["arena"]


# --- full-tree (native) semantics ---------------------------------------------------


def base_layer() -> bytes:
    return (L().add_dir("etc", **OWN).add_file("etc/a", b"a", **OWN).add_file("etc/b", b"b", **OWN)
            .add_dir("etc/d", **OWN).add_file("etc/d/x", b"x", **OWN).add_dir("etc/d/sub", **OWN)
            .add_file("etc/d/sub/y", b"y", **OWN)
            .add_dir("keep", **OWN).add_file("keep/k", b"k", **OWN).build())


def test_whiteout_deletes_file_and_tree(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_whiteout("etc/a").add_whiteout("etc/d").add_whiteout("etc/never-existed").build(), tmp_path)
    assert tree(tmp_path) == {"etc": "dir", "etc/b": "file b", "keep": "dir", "keep/k": "file k"}


def test_opaque_keeps_only_this_layers_entries(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    # The marker after this layer's own entries: they stay, the lower ones go,
    # also below a directory this layer rewrote (etc/d keeps only new/).
    layer = (L().add_dir("etc", **OWN).add_file("etc/new", b"n", **OWN).add_dir("etc/d", **OWN)
             .add_file("etc/d/new2", b"2", **OWN).add_opaque("etc").build())
    apply(layer, tmp_path)
    assert tree(tmp_path) == {"etc": "dir", "etc/new": "file n", "etc/d": "dir", "etc/d/new2": "file 2",
                              "keep": "dir", "keep/k": "file k"}


def test_opaque_first_then_entries(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_opaque("etc").add_file("etc/fresh", b"f", **OWN).build(), tmp_path)
    assert tree(tmp_path) == {"etc": "dir", "etc/fresh": "file f", "keep": "dir", "keep/k": "file k"}


def test_opaque_below_implicit_parent(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    # etc/d/sub/z is written without entries for etc/, etc/d/: they are implicit
    result = apply(L().add_file("etc/d/sub/z", b"z", **OWN).add_opaque("etc").build(), tmp_path)
    assert tree(tmp_path) == {"etc": "dir", "etc/d": "dir", "etc/d/sub": "dir", "etc/d/sub/z": "file z",
                              "keep": "dir", "keep/k": "file k"}
    assert result.implicit_dirs == ("etc", "etc/d", "etc/d/sub")


def test_whiteout_of_own_entry_is_ignored(tmp_path: Path) -> None:
    # layer.md: whiteouts apply to lower layers only
    apply(base_layer(), tmp_path)
    apply(L().add_file("etc/a", b"new a", **OWN).add_whiteout("etc/a").build(), tmp_path)
    assert (tmp_path / "etc/a").read_bytes() == b"new a"


def test_whiteout_of_own_dir_hides_lower_content(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_dir("etc/d", **OWN).add_file("etc/d/mine", b"m", **OWN).add_whiteout("etc/d").build(), tmp_path)
    assert tree(tmp_path / "etc/d") == {"mine": "file m"}


def test_whiteout_then_recreate(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_whiteout("etc/d").add_dir("etc/d", **OWN).add_file("etc/d/again", b"g", **OWN).build(), tmp_path)
    assert tree(tmp_path / "etc/d") == {"again": "file g"}


def test_file_replaces_dir_and_dir_replaces_file(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_file("etc/d", b"now a file", **OWN).add_dir("etc/a", **OWN).add_file("etc/a/in", b"i", **OWN)
          .build(), tmp_path)
    assert (tmp_path / "etc/d").read_bytes() == b"now a file"
    assert tree(tmp_path / "etc/a") == {"in": "file i"}


def test_symlink_replaces_dir_and_file_replaces_symlink(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_symlink("etc/d", "/elsewhere", **OWN).add_symlink("etc/b", "a", **OWN).build(), tmp_path)
    assert os.readlink(tmp_path / "etc/d") == "/elsewhere"
    apply(L().add_file("etc/b", b"plain", **OWN).build(), tmp_path)
    assert (tmp_path / "etc/b").read_bytes() == b"plain"
    assert (tmp_path / "etc/a").read_bytes() == b"a"  # the symlink's target was not written through


def test_dir_over_dir_updates_metadata_and_keeps_content(tmp_path: Path) -> None:
    apply(base_layer(), tmp_path)
    apply(L().add_dir("etc/d", mode=0o711, mtime=1_000_000_000, **OWN).build(), tmp_path)
    st = (tmp_path / "etc/d").stat()
    assert stat.S_IMODE(st.st_mode) == 0o711
    assert st.st_mtime == 1_000_000_000
    assert (tmp_path / "etc/d/x").read_bytes() == b"x"


def test_file_over_file_never_writes_into_a_shared_inode(tmp_path: Path) -> None:
    apply(L().add_file("a", b"original", **OWN).add_hardlink("b", "a", **OWN).build(), tmp_path)
    apply(L().add_file("b", b"replaced", **OWN).build(), tmp_path)
    assert (tmp_path / "a").read_bytes() == b"original"
    assert (tmp_path / "b").read_bytes() == b"replaced"


def test_directory_times_are_set_after_their_entries(tmp_path: Path) -> None:
    layer = L().add_dir("d", mtime=1_111_111_111, **OWN).add_file("d/f", b"x", mtime=1_222_222_222, **OWN).build()
    apply(layer, tmp_path)
    assert (tmp_path / "d").stat().st_mtime == 1_111_111_111
    assert (tmp_path / "d/f").stat().st_mtime == 1_222_222_222


def test_hardlink_within_layer_and_to_lower_layer_native(tmp_path: Path) -> None:
    apply(L().add_file("lower", b"L", **OWN).build(), tmp_path)
    apply(L().add_file("f", b"F", **OWN).add_hardlink("h1", "f", **OWN).add_hardlink("h2", "lower", **OWN).build(),
          tmp_path)
    assert os.stat(tmp_path / "h1").st_ino == os.stat(tmp_path / "f").st_ino
    assert os.stat(tmp_path / "h2").st_ino == os.stat(tmp_path / "lower").st_ino


def test_hardlink_to_in_tree_symlink_is_allowed(tmp_path: Path) -> None:
    apply(L().add_symlink("s", "target", **OWN).add_hardlink("h", "s", **OWN).build(), tmp_path)
    assert os.readlink(tmp_path / "h") == "target"
    assert os.lstat(tmp_path / "h").st_ino == os.lstat(tmp_path / "s").st_ino


def test_leading_slash_is_stripped(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    apply(L().add_dir("/abs", **OWN).add_file("/abs/path", b"in", **OWN).add_hardlink("/abs/h", "/abs/path", **OWN)
          .build(), root)
    assert (root / "abs/path").read_bytes() == b"in"
    assert os.stat(root / "abs/h").st_ino == os.stat(root / "abs/path").st_ino


# --- hostile layers: rejected, nothing outside written -----------------------------


MODES = [pytest.param(False, id="native"), pytest.param(True, id="overlay")]


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("name", ["../x", "a/../../x", "../outside/secret", "./../../x", "a/b/../../../outside/x"])
def test_dotdot_escape(arena: tuple[Path, Path], overlay: bool, name: str) -> None:
    root, _ = arena
    with pytest.raises(InvalidArgument, match="outside the root"):
        apply(L().add_file(name, b"pwned", **OWN).build(), root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_write_through_absolute_symlink_of_same_layer(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    layer = L().add_symlink("a", str(sentinel), **OWN).add_file("a/secret", b"pwned", **OWN).build()
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("target", ["../outside", "../../..", "../../arena/outside", "."])
def test_write_through_relative_symlink_of_same_layer(arena: tuple[Path, Path], overlay: bool, target: str) -> None:
    root, _ = arena
    layer = L().add_symlink("a", target, **OWN).add_file("a/x", b"pwned", **OWN).build()
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_write_through_nested_symlink(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    layer = (L().add_dir("d", **OWN).add_symlink("d/link", str(sentinel), **OWN)
             .add_dir("d/link/sub", **OWN).build())
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_whiteout_through_symlink(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    layer = L().add_symlink("a", str(sentinel), **OWN).add_whiteout("a/secret").build()
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_hardlink_escaping_with_dotdot(arena: tuple[Path, Path], overlay: bool) -> None:
    root, _ = arena
    with pytest.raises(InvalidArgument, match="outside the root"):
        apply(L().add_hardlink("h", "../outside/secret", **OWN).build(), root, overlay=overlay)
    with pytest.raises(InvalidArgument, match="outside the root"):
        apply(L().add_hardlink("h", "../../etc/passwd", **OWN).build(), root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_hardlink_to_absolute_path_stays_inside(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    # "/…/outside/secret" means <root>/…/outside/secret, which does not exist: rejected
    with pytest.raises(InvalidArgument, match="does not exist"):
        apply(L().add_hardlink("h", str(sentinel / "secret"), **OWN).build(), root, overlay=overlay)
    with pytest.raises(InvalidArgument, match="does not exist"):
        apply(L().add_hardlink("h", "/etc/passwd", **OWN).build(), root, overlay=overlay)
    assert os.stat("/etc/passwd").st_nlink == 1


@pytest.mark.parametrize("overlay", MODES)
def test_hardlink_to_symlink_pointing_outside(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    for target in (str(sentinel / "secret"), "../outside/secret", "d/../../x"):
        layer = L().add_symlink("s", target, **OWN).add_hardlink("h", "s", **OWN).build()
        with pytest.raises(InvalidArgument, match="points outside"):
            apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_hardlink_through_symlinked_dir(arena: tuple[Path, Path], overlay: bool) -> None:
    root, sentinel = arena
    layer = L().add_symlink("a", str(sentinel), **OWN).add_hardlink("h", "a/secret", **OWN).build()
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_hardlink_to_directory_or_itself_or_root(arena: tuple[Path, Path], overlay: bool) -> None:
    root, _ = arena
    with pytest.raises(InvalidArgument, match="directory"):
        apply(L().add_dir("d", **OWN).add_hardlink("h", "d", **OWN).build(), root, overlay=overlay)
    with pytest.raises(InvalidArgument, match="itself"):
        apply(L().add_hardlink("h", "h", **OWN).build(), root, overlay=overlay)
    with pytest.raises(InvalidArgument, match="root"):
        apply(L().add_hardlink("h", "./", **OWN).build(), root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize(("name", "kind", "link"), [
    ("a\x00b", b"0", ""),
    ("../../x\x00", b"0", ""),
    ("s", SYMTYPE, "tar\x00get"),
    ("h", LNKTYPE, "f\x00"),
])
def test_nul_bytes(arena: tuple[Path, Path], overlay: bool, name: str, kind: bytes, link: str) -> None:
    root, _ = arena
    layer = L().add_file("f", b"f", **OWN).add_raw(name, type=kind, linkname=link, force_pax=True, **OWN).build()
    with pytest.raises(InvalidArgument, match=r"NUL|invalid"):
        apply(layer, root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
@pytest.mark.parametrize("name", [".wh.", "d/.wh..", "d/.wh..."])
def test_whiteout_of_dot_names(arena: tuple[Path, Path], overlay: bool, name: str) -> None:
    root, _ = arena
    with pytest.raises(InvalidArgument, match="whiteout"):
        apply(L().add_raw(name, **OWN).build(), root, overlay=overlay)


@pytest.mark.parametrize("overlay", MODES)
def test_root_replaced_by_non_directory(arena: tuple[Path, Path], overlay: bool) -> None:
    root, _ = arena
    with pytest.raises(InvalidArgument, match="root"):
        apply(L().add_symlink("./", "/", **OWN).build(), root, overlay=overlay)


def test_earlier_layers_symlink_native(arena: tuple[Path, Path]) -> None:
    root, sentinel = arena
    apply(L().add_symlink("etc", str(sentinel), **OWN).add_symlink("rel", "../outside", **OWN).build(), root)
    for layer in (L().add_file("etc/secret", b"pwned", **OWN).build(),
                  L().add_file("rel/secret", b"pwned", **OWN).build(),
                  L().add_whiteout("etc/secret").build(),
                  L().add_opaque("etc").build(),
                  L().add_hardlink("x", "etc/secret", **OWN).build()):
        with pytest.raises(InvalidArgument, match="symlink"):
            apply(layer, root)


def test_earlier_layers_symlink_overlay_is_caught_by_check_implicit_dirs(arena: tuple[Path, Path]) -> None:
    root, sentinel = arena
    lower = root / "lower"
    upper = root / "upper"
    lower.mkdir()
    upper.mkdir()
    apply(L().add_dir("usr", **OWN).add_symlink("usr/lib", str(sentinel), **OWN).build(), lower, overlay=True)
    # Unpacked without its lowers (the parallel path): nothing to see yet...
    result = apply(L().add_file("usr/lib/secret", b"pwned", **OWN).build(), upper, overlay=True,
                   parent_pending=True)
    assert result.implicit_dirs == ("usr", "usr/lib")
    # ...until the check before commit
    with pytest.raises(InvalidArgument, match="symlink"):
        check_implicit_dirs(result.implicit_dirs, [str(lower)])
    # With the lowers at hand, the applier refuses at once.
    upper2 = root / "upper2"
    upper2.mkdir()
    with pytest.raises(InvalidArgument, match="symlink"):
        apply(L().add_file("usr/lib/secret", b"pwned", **OWN).build(), upper2, overlay=True, lowers=(str(lower),))


def test_check_implicit_dirs_follows_overlay_rules(tmp_path: Path) -> None:
    near, far = tmp_path / "near", tmp_path / "far"
    near.mkdir()
    far.mkdir()
    # far: a/ is a symlink; near: a/ is a real dir, which hides it: fine
    os.symlink("/etc", far / "a")
    (near / "a").mkdir()
    check_implicit_dirs(["a", "a/b"], [str(near), str(far)])
    # b is a symlink in far and absent in near: the merge shows the symlink
    os.symlink("/etc", far / "b")
    with pytest.raises(InvalidArgument, match="symlink"):
        check_implicit_dirs(["b/c"], [str(near), str(far)])
    # c is a regular file below: not a directory
    (far / "c").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="not a directory"):
        check_implicit_dirs(["c"], [str(near), str(far)])
    # absent everywhere: fine
    check_implicit_dirs(["new/dir"], [str(near), str(far)])


def test_lower_needed_when_parents_pending(tmp_path: Path) -> None:
    layer = L().add_hardlink("h", "usr/bin/tool", **OWN).build()
    with pytest.raises(LowerNeeded):
        apply(layer, tmp_path, overlay=True, parent_pending=True)
    with pytest.raises(InvalidArgument, match="does not exist"):
        apply(layer, tmp_path, overlay=True)


def test_hardlink_copies_up_from_lower(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply(L().add_dir("bin", mode=0o751, **OWN).add_file("bin/tool", b"T", mode=0o755, mtime=1_500_000_000, **OWN)
          .build(), lower, overlay=True)
    apply(L().add_hardlink("bin/alias", "bin/tool", **OWN).build(), upper, overlay=True, lowers=(str(lower),))
    assert (upper / "bin/tool").read_bytes() == b"T"
    st = (upper / "bin/tool").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o755, 1_500_000_000)
    assert os.stat(upper / "bin/alias").st_ino == st.st_ino
    assert stat.S_IMODE((upper / "bin").stat().st_mode) == 0o751  # implicit dir took the lower's mode
    assert os.stat(lower / "bin/tool").st_nlink == 1  # the lower is untouched


def test_whiteout_then_implicit_dir_over_a_lower_symlink(tmp_path: Path) -> None:
    """".wh.a" then "a/b": the lower symlink "a" is deleted, not written through,
    in both modes (the overlay upper gets a fresh opaque dir "a")."""
    lower, upper, full = tmp_path / "lower", tmp_path / "upper", tmp_path / "full"
    for p in (lower, upper, full):
        p.mkdir()
    base = L().add_symlink("a", "/etc", **OWN).build()
    top = L().add_whiteout("a").add_file("a/b", b"b", **OWN).build()
    apply(base, full)
    apply(top, full)
    assert (full / "a/b").read_bytes() == b"b"
    apply(base, lower, overlay=True)
    if os.geteuid() == 0:  # whiteout devices and trusted.* need root
        result = apply(top, upper, overlay=True, lowers=(str(lower),))
        assert result.implicit_dirs == ()
        check_implicit_dirs(result.implicit_dirs, [str(lower)])


def test_below_an_opaque_dir_the_lowers_do_not_count(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("trusted.overlay.opaque needs root")
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply(L().add_dir("a", **OWN).add_symlink("a/b", "/etc", **OWN).build(), lower, overlay=True)
    result = apply(L().add_opaque("a").add_file("a/b/c", b"c", **OWN).build(), upper, overlay=True,
                   lowers=(str(lower),))
    assert result.implicit_dirs == ("a",)
    check_implicit_dirs(result.implicit_dirs, [str(lower)])
