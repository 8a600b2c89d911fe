import json

import pytest

from hawser.errors import InvalidArgument, Unimplemented
from hawser.images._chain import chain_ids
from hawser.oci import (
    Digest,
    Platform,
    media,
    parse_config,
    parse_index,
    parse_manifest,
    parse_reference,
    sniff_media_type,
)

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
    ("localhost/app:v1", "localhost/app:v1"),
    ("127.0.0.1:5000/a/b@" + D, "127.0.0.1:5000/a/b@" + D),
    ("127.0.0.1:5000/a/b:t@" + D, "127.0.0.1:5000/a/b:t@" + D),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("registry.example/a__b/c-d.e:tag_1.0", "registry.example/a__b/c-d.e:tag_1.0"),
])
def test_reference_normalised(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize("text", [
    "", " busybox", "Busybox", "a//b", "a/b:", "a/b:-x", "a/b@sha256:123", "a/b@md5:" + "a" * 32,
    "127.0.0.1:5000/A/b", "a/b:" + "t" * 200, "a:b:c", "-a/b", "a/b/", "x" * 300,
])
def test_reference_rejected(text: str) -> None:
    with pytest.raises((InvalidArgument, Unimplemented)):
        parse_reference(text)


def test_reference_parts() -> None:
    ref = parse_reference("127.0.0.1:5000/a/b:v1")
    assert (ref.domain, ref.path, ref.tag, ref.object) == ("127.0.0.1:5000", "a/b", "v1", "v1")
    assert parse_reference("busybox").familiar() == "busybox:latest"


def test_digest_validation() -> None:
    assert Digest(D).encoded == "a" * 64
    with pytest.raises(Unimplemented, match="unsupported digest algorithm"):
        Digest("md5:" + "a" * 32)
    with pytest.raises(InvalidArgument):
        Digest("sha256:" + "A" * 64)
    with pytest.raises(InvalidArgument):
        Digest("sha256:abc")
    assert Digest.of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _manifest(**over: object) -> bytes:
    obj = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
           "config": {"mediaType": media.OCI_CONFIG, "digest": D, "size": 2},
           "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": D, "size": 3}]}
    obj.update(over)
    return json.dumps(obj).encode()


def test_manifest_parsed() -> None:
    m = parse_manifest(_manifest())
    assert m.config.size == 2 and m.layers[0].media_type == media.OCI_LAYER_GZIP


@pytest.mark.parametrize("data", [
    b"not json", b"[]", _manifest(schemaVersion=3), _manifest(layers="x"), _manifest(config=None),
    _manifest(layers=[{"mediaType": "x", "digest": "sha256:zz", "size": 1}]),
    _manifest(layers=[{"mediaType": "x", "digest": D, "size": -1}]),
    _manifest(mediaType="application/x-unknown"),
    b" " * (4 << 20) + b"{}",
])
def test_manifest_rejected(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        parse_manifest(data)


def test_schema1_refused() -> None:
    data = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    assert sniff_media_type(data) == media.DOCKER_SCHEMA1
    with pytest.raises(Unimplemented, match="schema 1"):
        parse_manifest(data, media.DOCKER_SCHEMA1)


def test_index_and_platforms() -> None:
    data = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": D, "size": 1,
         "platform": {"os": "linux", "architecture": "aarch64", "variant": "8"}}]}).encode()
    index = parse_index(data)
    assert index.manifests[0].platform == Platform("linux", "arm64", "v8")
    assert sniff_media_type(data) == media.OCI_INDEX
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/arm/v7").matches(Platform("linux", "arm", "v6"))
    assert Platform.parse("linux/x86_64") == Platform("linux", "amd64")
    with pytest.raises(InvalidArgument):
        Platform.parse("linux")


def test_config_parsed_and_checked() -> None:
    cfg = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [D]},
           "config": {"Entrypoint": ["/bin/sh"], "Env": ["A=1"], "User": "app", "ExposedPorts": {"80/tcp": {}}}}
    parsed = parse_config(json.dumps(cfg).encode())
    assert parsed.entrypoint == ("/bin/sh",) and parsed.user == "app" and parsed.exposed_ports == ("80/tcp",)
    cfg["rootfs"] = {"type": "layers", "diff_ids": ["nope"]}
    with pytest.raises(InvalidArgument):
        parse_config(json.dumps(cfg).encode())
    with pytest.raises(InvalidArgument):
        parse_config(b'{"os": "linux"}')


def test_chain_ids() -> None:
    a, b = Digest("sha256:" + "1" * 64), Digest("sha256:" + "2" * 64)
    chains = chain_ids([a, b])
    assert chains[0] == a
    import hashlib
    assert chains[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
