"""``hawser load`` refuses hostile and broken archives: each in one line, with
nothing written outside the store and no image recorded; what it stored
before it stopped goes with the next collection.

The archives are written by hand (tests/support/layers.py's tar builder), so
they can hold what no tool writes: ``..`` and absolute names, links where
blobs should be, sizes that lie.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Env, one_line
from tests.support.images import BuiltImage, build_image
from tests.support.layers import LNKTYPE, SYMTYPE, LayerBuilder, busybox_layers, header

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
NAME = "127.0.0.1/hostile/image:1"
TOKEN = secrets.token_hex(6)
ESCAPED = f"escaped-{TOKEN}"
ABSOLUTE = f"/tmp/hawser-absolute-{TOKEN}"

# An archive as (name, data) entries in order; data None with a link: (name, None, type, target).
Entries = list[tuple[str, bytes | None, bytes, str]]


def _file(name: str, data: bytes) -> tuple[str, bytes | None, bytes, str]:
    return (name, data, b"0", "")


def _image() -> BuiltImage:
    return build_image(busybox_layers())


def _oci(image: BuiltImage, manifest: bytes | None = None) -> Entries:
    manifest = image.manifest if manifest is None else manifest
    entries = [_file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    for desc, blob in image.layers:
        entries.append(_file(f"blobs/sha256/{desc.digest.encoded}", blob))
    entries.append(_file(f"blobs/sha256/{image.config_desc.digest.encoded}", image.config))
    digest = hashlib.sha256(manifest).hexdigest()
    entries.append(_file(f"blobs/sha256/{digest}", manifest))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": image.manifest_desc.media_type, "digest": f"sha256:{digest}", "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": NAME}}]}
    entries.append(_file("index.json", json.dumps(index).encode()))
    return entries


def _docker(image: BuiltImage, *, layer_paths: list[str] | None = None) -> Entries:
    config_name = f"{image.config_desc.digest.encoded}.json"
    names = [f"{d.removeprefix('sha256:')}.tar" for d in image.diff_ids]
    entries = [_file(config_name, image.config)]
    entries += [_file(n, tar) for n, tar in zip(names, image.tars, strict=True)]
    entries.append(_file("manifest.json", json.dumps(
        [{"Config": config_name, "RepoTags": [NAME], "Layers": layer_paths or names}]).encode()))
    return entries


def _tar(entries: Entries) -> bytes:
    b = LayerBuilder()
    for name, data, type_, link in entries:
        b.add_raw(name, type=type_, data=data or b"", linkname=link)
    return b.build()


def _replace(entries: Entries, name: str, new: tuple[str, bytes | None, bytes, str] | None) -> Entries:
    out = [e for e in entries if e[0] != name] if new is None else [new if e[0] == name else e for e in entries]
    assert out != entries
    return out


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _lying_size(image: BuiltImage) -> bytes:
    """A tar whose first blob's header claims a terabyte."""
    raw = bytearray(_tar(_oci(image)))
    first = f"blobs/sha256/{image.layers[0][0].digest.encoded}".encode()
    at = raw.find(first)
    raw[at:at + 512] = header(first, size=1 << 40)
    return bytes(raw)


def _big_descriptor(image: BuiltImage) -> bytes:
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["size"] = 1 << 50
    return _tar(_oci(image, json.dumps(manifest).encode()))


def _cases() -> dict[str, tuple[Callable[[BuiltImage], bytes], str]]:
    def layer(image: BuiltImage, i: int = -1) -> str:
        return f"blobs/sha256/{image.layers[i][0].digest.encoded}"

    return {
        "traversal": (lambda im: _tar([*_oci(im), _file(f"../../{ESCAPED}", b"x")]), "climbs out of the archive"),
        "absolute": (lambda im: _tar([_file(ABSOLUTE, b"x"), *_oci(im)]), "has an absolute path"),
        "missing blob": (lambda im: _tar(_replace(_oci(im), layer(im), None)), "is missing from the archive"),
        "layer digest mismatch": (lambda im: _tar(_replace(_oci(im), layer(im, 0), _file(
            layer(im, 0), _flip(im.layers[0][1], 200)))), "digest mismatch"),
        "config digest mismatch": (lambda im: _tar(_replace(_oci(im), f"blobs/sha256/{im.config_desc.digest.encoded}",
                                   _file(f"blobs/sha256/{im.config_desc.digest.encoded}",
                                         im.config.replace(b"layer 0", b"layer X")))),
                                   "does not match its digest"),
        "symlink blob": (lambda im: _tar(_replace(_oci(im), layer(im), (layer(im), None, SYMTYPE, "/etc/passwd"))),
                         "is a symlink (to '/etc/passwd'), not a file"),
        "hardlink blob": (lambda im: _tar(_replace(_oci(im), layer(im), (layer(im), None, LNKTYPE, "oci-layout"))),
                          "is a hardlink (to 'oci-layout'), not a file"),
        "size past the end": (_lying_size, "past the end of the archive"),
        "descriptor size": (_big_descriptor, "but its descriptor says"),
        "duplicate entry": (lambda im: _tar([*_oci(im), _file("index.json", b"{}")]), "two entries named"),
        "docker layer mismatch": (lambda im: _tar(_replace(_docker(im), f"{im.diff_ids[1][7:]}.tar", _file(
            f"{im.diff_ids[1][7:]}.tar", _flip(im.tars[1], 1100)))), "digest mismatch"),
        "docker layer outside": (lambda im: _tar(_docker(im, layer_paths=["../../../etc/passwd", "x.tar", "y.tar"])),
                                 "names '../../../etc/passwd', a path outside the archive"),
        "docker config renamed": (lambda im: _tar(_replace(_docker(im), f"{im.config_desc.digest.encoded}.json", _file(
            f"{im.config_desc.digest.encoded}.json", im.config.replace(b"layer 0", b"layer X")))),
                                  "does not match the digest in its name"),
        "not a tar": (lambda im: os.urandom(4096), "is not a tar archive"),
        "corrupt gzip": (lambda im: gzip.compress(_tar(_oci(im)), compresslevel=1)[:-4000], "corrupt gzip stream"),
    }


def _outside(tmp_path: Path) -> set[str]:
    """Every path under the test's directory but the store's."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        rel = os.path.relpath(dirpath, tmp_path)
        if rel.split(os.sep)[0] in ("root", "state"):
            continue
        out |= {os.path.join(rel, n) for n in dirnames + filenames}
    return out


def test_hostile_archives_are_refused(overlay_env: Env, tmp_path: Path) -> None:
    image = _image()
    archives = tmp_path / "archives"
    archives.mkdir()
    overlay_env.cli("system", "df")  # the store exists before the first archive
    cases = _cases()
    for case, (build, _) in cases.items():
        (archives / f"{case.replace(' ', '-')}.tar").write_bytes(build(image))
    before = _outside(tmp_path)
    for case, (_, expected) in cases.items():
        path = archives / f"{case.replace(' ', '-')}.tar"
        line = one_line(overlay_env.cli("load", "-q", "-i", str(path), check=False))
        assert expected in line and line.startswith("hawser: "), (case, line)
        assert overlay_env.cli("images", "-q").stdout == "", case
    # Hostile input on standard input too (spooled first: a pipe cannot be read twice).
    traversal = (archives / "traversal.tar").read_bytes()
    proc = subprocess.run(overlay_env._argv(("load",)), input=traversal, capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"climbs out of the archive" in proc.stderr and proc.stdout == b""

    assert _outside(tmp_path) == before
    for escaped in (tmp_path.parent / ESCAPED, tmp_path.parent.parent / ESCAPED, Path.cwd() / ESCAPED,
                    Path(ABSOLUTE)):
        assert not escaped.exists(), escaped
    # What the refused loads stored (layers that came before a bad one) is collected.
    overlay_env.cli("system", "prune")
    df = json.loads(overlay_env.cli("system", "df", "--format", "json").stdout)
    assert (df["images"]["count"], df["content"]["count"], df["snapshots"]["count"]) == (0, 0, 0)
    assert json.loads(overlay_env.cli("images", "--format", "json").stdout) == []


def test_a_good_archive_of_the_same_builder_loads(overlay_env: Env, tmp_path: Path) -> None:
    """The hand-made archives above are refused for their faults alone."""
    image = _image()
    for fmt, entries in (("oci", _oci(image)), ("docker", _docker(image))):
        path = tmp_path / f"{fmt}.tar"
        path.write_bytes(_tar(entries))
        assert overlay_env.cli("load", "-q", "-i", str(path)).stdout.split() == [NAME]
        detail = json.loads(overlay_env.cli("image", "inspect", NAME).stdout)[0]
        assert detail["Id"] == str(image.config_desc.digest)
        if fmt == "oci":
            assert detail["ManifestDigest"] == str(image.manifest_desc.digest)
