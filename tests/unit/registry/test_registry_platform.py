"""Choosing a manifest from an index by platform."""

from __future__ import annotations

import json

import pytest

from hawser.errors import InvalidArgument, NotFound
from hawser.oci import Descriptor, Digest, Platform, media, parse_index
from hawser.registry import select_platform


def entry(platform: dict[str, str] | None, n: int, media_type: str = media.OCI_MANIFEST) -> dict[str, object]:
    d: dict[str, object] = {"mediaType": media_type, "digest": str(Digest.of(str(n).encode())), "size": 100 + n}
    if platform is not None:
        d["platform"] = platform
    return d


def index_bytes(*entries: dict[str, object], media_type: str = media.OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()


MULTI = index_bytes(
    entry({"os": "linux", "architecture": "amd64"}, 1),
    entry({"os": "linux", "architecture": "arm", "variant": "v6"}, 2),
    entry({"os": "linux", "architecture": "arm", "variant": "v7"}, 3),
    entry({"os": "linux", "architecture": "arm64", "variant": "v8"}, 4),
    entry({"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1"}, 5),
    entry({"os": "unknown", "architecture": "unknown"}, 6),
)


def picked(data: bytes, platform: Platform) -> int:
    desc = select_platform(data, platform)
    return desc.size - 100


def test_exact_matches() -> None:
    assert picked(MULTI, Platform("linux", "amd64")) == 1
    assert picked(MULTI, Platform("linux", "arm", "v7")) == 3
    assert picked(MULTI, Platform("linux", "arm", "v6")) == 2
    assert picked(MULTI, Platform("windows", "amd64")) == 5


def test_arm64_v8_normalisation_both_ways() -> None:
    assert picked(MULTI, Platform("linux", "arm64")) == 4
    assert picked(MULTI, Platform("linux", "aarch64", "8")) == 4
    no_variant = index_bytes(entry({"os": "linux", "architecture": "arm64"}, 7))
    assert picked(no_variant, Platform("linux", "arm64", "v8")) == 7
    assert picked(no_variant, Platform.parse("linux/arm64")) == 7


def test_exact_variant_preferred_over_variantless() -> None:
    data = index_bytes(entry({"os": "linux", "architecture": "arm"}, 1),
                       entry({"os": "linux", "architecture": "arm", "variant": "v7"}, 2))
    assert picked(data, Platform("linux", "arm", "v7")) == 2
    assert picked(data, Platform("linux", "arm", "v6")) == 1


def test_older_arm_variants_run_on_newer() -> None:
    data = index_bytes(entry({"os": "linux", "architecture": "arm", "variant": "v5"}, 1),
                       entry({"os": "linux", "architecture": "arm", "variant": "v6"}, 2))
    assert picked(data, Platform("linux", "arm", "v7")) == 2  # nearest older first
    with pytest.raises(NotFound):
        select_platform(index_bytes(entry({"os": "linux", "architecture": "arm", "variant": "v7"}, 1)),
                        Platform("linux", "arm", "v6"))


def test_first_of_equals_wins() -> None:
    data = index_bytes(entry({"os": "linux", "architecture": "amd64"}, 1),
                       entry({"os": "linux", "architecture": "amd64"}, 2))
    assert picked(data, Platform("linux", "amd64")) == 1


def test_docker_manifest_list() -> None:
    data = index_bytes(entry({"os": "linux", "architecture": "amd64"}, 1, media.DOCKER_MANIFEST),
                       media_type=media.DOCKER_MANIFEST_LIST)
    assert select_platform(parse_index(data), Platform("linux", "amd64")).media_type == media.DOCKER_MANIFEST


def test_entries_without_platform_or_with_other_types_are_skipped() -> None:
    data = index_bytes(entry(None, 1), entry({"os": "linux", "architecture": "amd64"}, 2, "application/x-attestation"))
    with pytest.raises(NotFound, match=r"none listed"):
        select_platform(data, Platform("linux", "amd64"))


def test_not_found_lists_available_platforms() -> None:
    with pytest.raises(NotFound) as info:
        select_platform(MULTI, Platform("linux", "s390x"))
    text = str(info.value)
    assert "linux/s390x" in text
    for shown in ("linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8", "windows/amd64"):
        assert shown in text
    assert info.value.hint and "--platform" in info.value.hint


def test_default_is_the_host_platform() -> None:
    try:
        host = Platform.host()
    except AttributeError:
        # hawser/oci/_image.py defines a function _platform() that shadows its
        # `import platform as _platform`; reported to the owner of hawser.oci.
        pytest.xfail("Platform.host() is broken in hawser.oci")
    data = index_bytes(entry({"os": host.os, "architecture": host.architecture}, 9))
    assert isinstance(select_platform(data), Descriptor)


def test_bytes_that_are_not_an_index() -> None:
    with pytest.raises(InvalidArgument):
        select_platform(b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}')
