"""The benchmark image: built from this host's own files (no downloads), cached
under bench/.work/image, and pushed to the local registry with plain HTTP.

Layers are deterministic tars (sorted walk, numeric owners, no user names),
gzip-compressed by pigz; ``rootfs.diff_ids`` are the sha256 of the tars."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx
from _common import MB, MIB, REPO, Registry, ToolError, check_free_space, fmt_bytes

RECIPE_VERSION = 2
MAX_FILE = 16 * MIB  # leave out the few giant files (libLLVM, node, ...): realistic images rarely hold them
FIXED_MTIME = 1_700_000_000  # synthetic entries only; host files keep their mtime

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Source:
    host: str  # directory on this host
    dest: str  # where it goes in the image (relative, no leading /)
    budget: int  # bytes of regular-file data taken from it (sorted walk, stops when reached)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    created_by: str
    sources: tuple[Source, ...]
    extras: tuple[str, ...] = ()  # synthetic content: "rootlinks", "etc", "whiteouts"


def _first(*candidates: str) -> str:
    for c in candidates:
        if os.path.isdir(c):
            return c
    return candidates[0]


def _python_stdlib() -> str:
    return _first("/usr/lib/python3.11", "/usr/lib/python3", *sorted(str(p) for p in Path("/root/.pyenv/versions").glob(
        "3.*/lib/python3.*")))


VENV_SITE = str(REPO / ".venv/lib/python3.11/site-packages")

LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("base", "base system: /usr/bin, /usr/sbin, /usr/libexec, shared libraries", (
        Source("/usr/bin", "usr/bin", 70 * MB),
        Source("/usr/sbin", "usr/sbin", 15 * MB),
        Source("/usr/libexec", "usr/libexec", 15 * MB),
        Source("/usr/lib64", "usr/lib64", 2 * MB),
        Source("/usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", 130 * MB),
        Source("/usr/lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", 150 * MB),
    ), ("rootlinks", "etc")),
    LayerSpec("share", "data: /usr/share (locales, man pages, docs, perl, zoneinfo, ...)", (
        Source("/usr/share/zoneinfo", "usr/share/zoneinfo", 10 * MB),
        Source("/usr/share/i18n", "usr/share/i18n", 20 * MB),
        Source("/usr/share/perl", "usr/share/perl", 25 * MB),
        Source("/usr/share/mime", "usr/share/mime", 10 * MB),
        Source("/usr/share/man", "usr/share/man", 8 * MB),
        Source("/usr/share/doc", "usr/share/doc", 25 * MB),
        Source("/usr/share/locale", "usr/share/locale", 25 * MB),
        Source("/usr/share/vim", "usr/share/vim", 15 * MB),
    )),
    LayerSpec("python", "python runtime: the standard library and system dist-packages", (
        Source(_python_stdlib(), "usr/lib/python3.11", 80 * MB),
        Source("/usr/lib/python3/dist-packages", "usr/lib/python3/dist-packages", 60 * MB),
    )),
    LayerSpec("headers", "build dependencies: /usr/include", (
        Source("/usr/include", "usr/include", 60 * MB),
    )),
    LayerSpec("venv", "application dependencies: a virtualenv's site-packages", (
        Source(VENV_SITE, "opt/venv/lib/python3.11/site-packages", 140 * MB),
    )),
    LayerSpec("app", "application: source code, tests, clean-up (whiteouts)", (
        Source(str(REPO / "src"), "app/src", 20 * MB),
        Source(str(REPO / "tests"), "app/tests", 20 * MB),
        Source(str(REPO / "scripts"), "app/scripts", 5 * MB),
    ), ("whiteouts",)),
)


def recipe_key() -> str:
    blob = json.dumps({"v": RECIPE_VERSION, "max": MAX_FILE, "layers": [asdict(layer) for layer in LAYERS]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- building


@dataclass
class LayerInfo:
    name: str
    digest: str
    size: int  # compressed
    diff_id: str
    uncompressed: int
    files: int  # regular files (hard links included)
    entries: int  # all tar entries
    seconds: float = 0.0


@dataclass
class BuiltImage:
    key: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layers: list[LayerInfo] = field(default_factory=list)
    build_seconds: float = 0.0

    @property
    def compressed(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)

    @property
    def files(self) -> int:
        return sum(layer.files for layer in self.layers)

    @property
    def entries(self) -> int:
        return sum(layer.entries for layer in self.layers)


class _HashingPipe:
    """File-like sink: hashes and counts what tarfile writes, forwards it to pigz."""

    def __init__(self, pigz: subprocess.Popen[bytes]) -> None:
        assert pigz.stdin is not None
        self._out = pigz.stdin
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._out.write(data)
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        self._out.close()


class _LayerWriter:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.dirs: set[str] = set()
        self.files = 0
        self.entries = 0
        self.regular: list[str] = []

    def _add(self, info: tarfile.TarInfo, fileobj: object = None) -> None:
        info.uname = info.gname = ""
        self.tar.addfile(info, fileobj)  # type: ignore[arg-type]
        self.entries += 1
        if info.isreg() or info.islnk():
            self.files += 1

    def synthetic_dir(self, arc: str) -> None:
        if arc in self.dirs:
            return
        info = tarfile.TarInfo(arc)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
        self._add(info)
        self.dirs.add(arc)

    def ancestors(self, arc: str) -> None:
        parts = arc.split("/")
        for i in range(1, len(parts)):
            self.synthetic_dir("/".join(parts[:i]))

    def symlink(self, arc: str, target: str) -> None:
        self.ancestors(arc)
        info = tarfile.TarInfo(arc)
        info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, FIXED_MTIME
        self._add(info)

    def data_file(self, arc: str, data: bytes, mode: int = 0o644) -> None:
        self.ancestors(arc)
        info = tarfile.TarInfo(arc)
        info.size, info.mode, info.mtime = len(data), mode, FIXED_MTIME
        self._add(info, io.BytesIO(data))

    def source(self, src: Source) -> None:
        if not os.path.isdir(src.host):
            return
        self.ancestors(src.dest)
        used = 0
        host_dev = os.lstat(src.host).st_dev

        def walk(host: str, arc: str) -> bool:
            """Adds ``host`` (a directory) as ``arc``; False once the budget is spent."""
            nonlocal used
            info = self.tar.gettarinfo(host, arc)
            self._add(info)
            self.dirs.add(arc)
            try:
                names = sorted(os.listdir(host))
            except OSError:
                return True
            for name in names:
                hp, ap = f"{host}/{name}", f"{arc}/{name}"
                try:
                    st = os.lstat(hp)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if st.st_dev == host_dev and not walk(hp, ap):
                        return False
                elif stat.S_ISLNK(st.st_mode):
                    self._add(self.tar.gettarinfo(hp, ap))
                elif stat.S_ISREG(st.st_mode):
                    if st.st_size > MAX_FILE:
                        continue
                    if used + st.st_size > src.budget:
                        return False
                    try:
                        f = open(hp, "rb")  # noqa: SIM115 - closed below; opened before gettarinfo (hard links)
                    except OSError:
                        continue
                    with f:
                        info = self.tar.gettarinfo(arcname=ap, fileobj=f)
                        self._add(info, f if info.isreg() else None)
                    if info.isreg():
                        used += st.st_size
                        self.regular.append(ap)
            return True

        walk(src.host.rstrip("/"), src.dest)


def _extras(w: _LayerWriter, extras: tuple[str, ...], earlier: list[list[str]]) -> None:
    if "rootlinks" in extras:
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            w.symlink(link, target)
    if "etc" in extras:
        w.synthetic_dir("etc")
        w.data_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        w.data_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        w.data_file("etc/hostname", b"bench\n")
        w.synthetic_dir("tmp")
        w.synthetic_dir("root")
    if "whiteouts" in extras:
        # "rm -rf /usr/share/doc/*" (an opaque directory) and the removal of a few files of the base layer.
        if any(a.startswith("usr/share/doc/") for layer in earlier for a in layer):
            w.synthetic_dir("usr/share/doc")
            w.data_file("usr/share/doc/.wh..wh..opq", b"")
        plain = [a for a in sorted(earlier[0]) if a.rpartition("/")[2][:1].isalnum()] if earlier else []
        for arc in plain[:3]:
            d, _, name = arc.rpartition("/")
            w.data_file(f"{d}/.wh.{name}", b"")


def _build_layer(spec: LayerSpec, blobdir: Path, earlier: list[list[str]]) -> tuple[LayerInfo, list[str]]:
    t0 = time.monotonic()
    tmp = blobdir / f".building-{spec.name}.gz"
    with open(tmp, "wb") as out:
        pigz = subprocess.Popen(["pigz", "-6", "-n", "-c", "-p", str(os.cpu_count() or 2)], stdin=subprocess.PIPE,
                                stdout=out)
    sink = _HashingPipe(pigz)
    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=MIB,  # type: ignore[call-overload]
                          copybufsize=MIB) as tar:
            w = _LayerWriter(tar)
            for src in spec.sources:
                w.source(src)
            _extras(w, spec.extras, earlier)
        sink.close()
    finally:
        if pigz.stdin and not pigz.stdin.closed:
            pigz.stdin.close()
        rc = pigz.wait()
    if rc != 0:
        raise ToolError(f"pigz failed ({rc}) compressing layer {spec.name}")
    sha = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(4 * MIB):
            sha.update(chunk)
    digest = "sha256:" + sha.hexdigest()
    tmp.rename(blobdir / sha.hexdigest())
    info = LayerInfo(spec.name, digest, tmp.parent.joinpath(sha.hexdigest()).stat().st_size,
                     "sha256:" + sink.sha.hexdigest(), sink.size, w.files, w.entries, time.monotonic() - t0)
    return info, w.regular


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def _write_blob(blobdir: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    (blobdir / hexd).write_bytes(data)
    return "sha256:" + hexd


def load_or_build(workdir: Path, rebuild: bool = False, log: bool = True) -> tuple[BuiltImage, Path]:
    """The cached image under ``workdir/image`` if it matches the recipe, else a fresh build."""
    imgdir = workdir / "image"
    blobdir = imgdir / "blobs"
    meta = imgdir / "image.json"
    key = recipe_key()
    if not rebuild and meta.exists():
        try:
            raw = json.loads(meta.read_text())
            img = BuiltImage(**{**raw, "layers": [LayerInfo(**x) for x in raw["layers"]]})
            wanted = {img.manifest_digest: img.manifest_size, **{x.digest: x.size for x in img.layers}}
            ok = img.key == key and (blobdir / img.config_digest.split(":", 1)[1]).is_file() and all(
                (blobdir / d.split(":", 1)[1]).is_file() and (blobdir / d.split(":", 1)[1]).stat().st_size == n
                for d, n in wanted.items())
            if ok:
                return img, blobdir
        except (OSError, ValueError, TypeError, KeyError):
            pass
    check_free_space(workdir, 1200 * MB, "building the image")
    if imgdir.exists():
        shutil.rmtree(imgdir)
    blobdir.mkdir(parents=True)
    t0 = time.monotonic()
    layers: list[LayerInfo] = []
    earlier: list[list[str]] = []
    for spec in LAYERS:
        info, regular = _build_layer(spec, blobdir, earlier)
        earlier.append(regular)
        layers.append(info)
        if log:
            print(f"  layer {spec.name:8} {info.files:6} files  {fmt_bytes(info.uncompressed):>9} -> "
                  f"{fmt_bytes(info.size):>9}  ({info.seconds:.1f} s)", flush=True)
    config = json.dumps({
        "created": "2026-01-01T00:00:00Z",
        "architecture": _arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "PYTHONPATH=/app/src"],
            "Cmd": ["/usr/bin/python3", "-m", "hawser.cli"],
            "WorkingDir": "/app",
        },
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": s.created_by} for s in LAYERS],
    }, sort_keys=True, separators=(",", ":")).encode()
    config_digest = _write_blob(blobdir, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": x.digest, "size": x.size} for x in layers],
    }, sort_keys=True, indent=2).encode()
    manifest_digest = _write_blob(blobdir, manifest)
    img = BuiltImage(key, manifest_digest, len(manifest), config_digest, layers, time.monotonic() - t0)
    meta.write_text(json.dumps(asdict(img), indent=2))
    return img, blobdir


# --------------------------------------------------------------------------- pushing


def push(reg: Registry, repo: str, tag: str, img: BuiltImage, blobdir: Path) -> int:
    """Push blobs (HEAD first, skip existing) and the manifest; returns bytes uploaded."""
    uploaded = 0
    base = reg.url("/")
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(300, connect=10)) as client:
        for digest in [img.config_digest, *(x.digest for x in img.layers)]:
            path = blobdir / digest.split(":", 1)[1]
            r = client.head(reg.url(f"/v2/{repo}/blobs/{digest}"))
            if r.status_code == 200:
                continue
            r = client.post(reg.url(f"/v2/{repo}/blobs/uploads/"))
            if r.status_code != 202 or "location" not in r.headers:
                raise ToolError(f"registry: starting an upload failed: {r.status_code} {r.text[:300]}")
            loc = urljoin(base, r.headers["location"])
            loc += ("&" if "?" in loc else "?") + f"digest={digest}"
            size = path.stat().st_size
            with open(path, "rb") as f:
                r = client.put(loc, content=f, headers={"Content-Type": "application/octet-stream",
                                                        "Content-Length": str(size)})
            if r.status_code != 201:
                raise ToolError(f"registry: uploading {digest} failed: {r.status_code} {r.text[:300]}")
            uploaded += size
        manifest = (blobdir / img.manifest_digest.split(":", 1)[1]).read_bytes()
        r = client.put(reg.url(f"/v2/{repo}/manifests/{tag}"), content=manifest,
                       headers={"Content-Type": OCI_MANIFEST})
        if r.status_code != 201:
            raise ToolError(f"registry: putting the manifest failed: {r.status_code} {r.text[:300]}")
        if r.headers.get("docker-content-digest", img.manifest_digest) != img.manifest_digest:
            raise ToolError(f"registry: manifest digest mismatch: {r.headers.get('docker-content-digest')}")
    return uploaded
