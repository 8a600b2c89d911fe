"""The fuzz targets: one function per parser, each taking raw bytes.

The contract every target checks: hostile input makes hawser raise one of its
error kinds (a HawserError subclass) and nothing else.  A target lets any
other exception escape; that is the crash a fuzzer reports.  The layer target
also checks that nothing was written outside the target directory and that
no device node or setuid file appeared that the layer did not ask for.

Shared by the hypothesis tests (tests/fuzz/test_*.py), the corpus replay in
the suite (test_corpus.py) and the atheris runner (tests/fuzz/run.py).
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from cri_api.v1 import api_pb2
from google.protobuf.message import DecodeError

from hawser.config import load_config
from hawser.config import parse_config as parse_hawser_config
from hawser.cri._container_options import plan_container
from hawser.cri.sandbox_run import pod_spec
from hawser.errors import HawserError
from hawser.images._apply import apply_layer
from hawser.images._tar import _octal
from hawser.network import parse_network_config, parse_result
from hawser.oci import parse_config, parse_index, parse_manifest, parse_reference, sniff_media_type
from hawser.registry import RegistryClient, RegistryOptions
from hawser.registry._challenge import parse_www_authenticate, pick_challenge
from hawser.registry._credentials import load_docker_config
from hawser.registry._hosts import _parse_hosts_file
from hawser.snapshots import ApplyTarget
from tests.support.cri_fakes import FakeFiles, make_sandbox

Target = Callable[[bytes], None]


def _text(data: bytes) -> str:
    # What reaches these parsers is decoded text (HTTP headers, TOML files, protobuf strings): valid Unicode.
    return data.decode("utf-8", "replace")


def reference(data: bytes) -> None:
    try:
        ref = parse_reference(_text(data))
    except HawserError:
        return
    # A parsed reference prints as a reference that parses to itself.
    assert parse_reference(str(ref)) == ref, (str(ref), ref)


def manifest(data: bytes) -> None:
    for parse in (sniff_media_type, parse_manifest, parse_index, parse_config):
        try:
            parse(data)
        except HawserError:
            pass


_SCRATCH: Path | None = None


def _scratch_file(name: str, data: bytes) -> Path:
    """A file holding ``data`` in a temp dir made once per process (these parsers read files)."""
    global _SCRATCH
    if _SCRATCH is None or not _SCRATCH.is_dir():
        _SCRATCH = Path(tempfile.mkdtemp(prefix="hawser-fuzz-"))
        atexit.register(shutil.rmtree, _SCRATCH, True)  # libFuzzer's exit skips this: run.py points tempdir at --out
    path = _SCRATCH / name
    path.write_bytes(data)
    return path


def hawser_config(data: bytes) -> None:
    for parse in (lambda: parse_hawser_config(_text(data), source="fuzz.toml"),
                  lambda: load_config(str(_scratch_file("config.toml", data)))):
        try:
            parse()
        except HawserError:
            pass


def hosts(data: bytes) -> None:
    path = _scratch_file("hosts.toml", data)
    try:
        _parse_hosts_file(path, "docker.io", scheme="https", netloc="registry-1.docker.io")
    except HawserError:
        pass


def docker_config(data: bytes) -> None:
    try:
        config = load_docker_config(_scratch_file("config.json", data))
        for host in ("docker.io", "registry.test", "[::1]:5000", "https://[x"):
            config.lookup(host)
    except HawserError:
        pass


def challenge(data: bytes) -> None:
    # Documented to never raise: not even a HawserError.
    values = _text(data).split("\n")
    pick_challenge(parse_www_authenticate(values))
    pick_challenge(parse_www_authenticate(values[0]))


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


_REF = parse_reference("registry.test/team/app:v1")


def challenge_client(data: bytes, *, reraise: bool = False) -> None:
    """The registry client answering a 401 whose WWW-Authenticate is the input (any bytes but CR and LF), then fetching a token from whatever realm the challenge names."""
    value = data.replace(b"\r", b" ").replace(b"\n", b" ")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry.test" and "authorization" not in request.headers:
            return httpx.Response(401, headers=[(b"www-authenticate", value)])
        if request.url.host == "registry.test":
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]})
        return httpx.Response(200, json={"token": "t", "expires_in": 60})

    clock = _Clock()
    options = RegistryOptions(transport=httpx.MockTransport(handle), clock=clock, sleep=clock.sleep,
                              docker_config=None, max_retries=1)
    try:
        with RegistryClient(options) as client:
            client.resolve(_REF)
    except HawserError:
        if reraise:
            raise


def cni(data: bytes) -> None:
    for parse in (parse_result, parse_network_config, lambda d: parse_network_config(d, single=True)):
        try:
            parse(data)
        except HawserError:
            pass


def pod_sandbox(data: bytes) -> None:
    try:
        config = api_pb2.PodSandboxConfig.FromString(data)
    except DecodeError:
        return  # grpc answers a message that does not decode before hawser sees it
    try:
        pod_spec(config, runtime_handler="")
    except HawserError:
        pass


_FILES = FakeFiles(files={"/etc/seccomp/app.json": b'{"defaultAction": "SCMP_ACT_ERRNO"}', "/etc/seccomp/x": b"["},
                   existing={"/srv/data"}, nodes={"/dev/fuse": ("c", 10, 229)}, shared={"/srv/data": "shared"})


def container(data: bytes) -> None:
    try:
        config = api_pb2.ContainerConfig.FromString(data)
    except DecodeError:
        return
    for sandbox in (make_sandbox(), make_sandbox(privileged=True, log_directory="")):
        try:
            plan_container(config, sandbox, files=_FILES, target_pid=4242)
        except HawserError:
            pass


# --- the layer applier ------------------------------------------------------------------------------


def _tree(root: str) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` -> (mode, rdev, size): what changed outside the target shows here."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_rdev, st.st_size if stat.S_ISREG(st.st_mode) else 0)
    return out


# Device numbers a fuzzed layer may create on this host: a node for a real disk could be written through.
SAFE_DEVICES = frozenset({os.makedev(0, 0), os.makedev(1, 3), os.makedev(1, 5), os.makedev(1, 7), os.makedev(1, 8)})


def _declared(data: bytes) -> tuple[set[int], bool]:
    """The device numbers any header of the tar declares, and whether any header has a setuid/setgid mode.

    Every 512-byte block is read as a header with the applier's own field parser (headers sit on
    block boundaries, so none is missed; data blocks read as headers only widen what is allowed)."""
    devices: set[int] = set()
    setid = False
    for off in range(0, len(data) - 511, 512):
        block = data[off:off + 512]
        try:
            setid = setid or bool(_octal(block[100:108], "mode") & 0o6000)
            if block[156:157] in (b"3", b"4"):
                devices.add(os.makedev(_octal(block[329:337], "devmajor"), _octal(block[337:345], "devminor")))
        except (HawserError, OverflowError, ValueError):
            continue  # a field the applier refuses or the kernel cannot take: nothing gets created from it
    return devices, setid


def layer(data: bytes, *, overlay: bool = False) -> None:
    devices, setid = _declared(data)
    if not devices <= SAFE_DEVICES:
        return  # not on this host
    base = tempfile.mkdtemp(prefix="hawser-fuzz-apply-")
    try:
        root = os.path.join(base, "root")
        outside = os.path.join(base, "outside")
        os.mkdir(root)
        os.mkdir(outside)
        Path(outside, "secret").write_bytes(b"do not touch")
        os.symlink(outside, os.path.join(base, "escape"))
        before = _tree(base)
        try:
            apply_layer(io.BytesIO(data), ApplyTarget(root, overlay_whiteouts=overlay), sync=False)
        except HawserError:
            pass
        after = _tree(base)
        outside_after = {k: v for k, v in after.items() if k != "root" and not k.startswith("root/")}
        outside_before = {k: v for k, v in before.items() if k != "root" and not k.startswith("root/")}
        assert outside_after == outside_before, "the layer changed something outside its target"
        assert stat.S_ISDIR(after["root"][0]), "the target directory was replaced"
        for rel, (mode, rdev, _) in after.items():
            if not rel.startswith("root/"):
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                allowed = rdev in devices or (overlay and stat.S_ISCHR(mode) and rdev == 0)
                assert allowed, f"device node {rel} ({os.major(rdev)}:{os.minor(rdev)}) the layer did not declare"
            if mode & 0o6000 and not stat.S_ISDIR(mode):
                assert setid, f"setuid/setgid file {rel} the layer did not ask for"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def layer_overlay(data: bytes) -> None:
    layer(data, overlay=True)


TARGETS: dict[str, Target] = {
    "reference": reference,
    "manifest": manifest,
    "config": hawser_config,
    "hosts": hosts,
    "docker_config": docker_config,
    "challenge": challenge,
    "challenge_client": challenge_client,
    "cni": cni,
    "pod_sandbox": pod_sandbox,
    "container": container,
    "layer": layer,
    "layer_overlay": layer_overlay,
}
