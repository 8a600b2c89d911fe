"""Signature policy on CRI PullImage: hawserd with ``[registry] policy`` set
refuses an unsigned image, one signed by another key and a tampered one with
PERMISSION_DENIED naming the scope, keeps nothing of them, accepts a signed
one, applies per-scope rules, and checks an image it holds already again
(the pull worker's checker path)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2

from hawser.images import generate_signing_key
from hawser.images._sign import push_signature, sign_payload, signature_payload
from hawser.oci import parse_reference
from hawser.registry import RegistryClient
from tests.e2e.helpers import pull_request, small_image, spec, status_code
from tests.e2e.test_containerd_pull import ctr
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, push_image
from tests.support.registry_fixtures import Registry


def _push(client: RegistryClient, registry: Registry, repo: str, tag: str = "1") -> tuple[str, BuiltImage]:
    image = small_image(f"e2e-policy {repo}:{tag}")
    ref = f"{registry.host}/e2e-policy/{repo}:{tag}"
    push_image(client, ref, image, tag=tag)
    return ref, image


def _sign(client: RegistryClient, ref: str, image: BuiltImage, key: str, *, for_image: BuiltImage | None = None) -> None:
    """Sign ``image`` at ``ref`` with ``key``; the payload names ``for_image``'s digest if given (a tampered one)."""
    parsed = parse_reference(ref)
    payload = signature_payload(parsed, (for_image or image).manifest_desc.digest)
    push_signature(client, parsed, image.manifest_desc.digest, payload, sign_payload(key, payload))


def _blobs(hawserd: Hawserd) -> set[str]:
    directory = hawserd.root / "content" / "blobs" / "sha256"
    return set(os.listdir(directory)) if directory.is_dir() else set()


def test_pull_image_under_a_signature_policy(hawserd: Hawserd, registry: Registry, push_client: RegistryClient,
                                             tmp_path: Path) -> None:
    trusted_key, trusted_pub = generate_signing_key(str(tmp_path / "trusted"))
    other_key, _ = generate_signing_key(str(tmp_path / "other"))
    policy = tmp_path / "policy.json"

    def write_policy(docker: dict[str, object]) -> None:
        policy.write_text(json.dumps({"default": [{"type": "reject"}], "transports": {"docker": docker}}))

    signed_only = {"": [{"type": "sigstoreSigned", "keyPath": trusted_pub}]}
    write_policy(signed_only)
    assert hawserd.stop() == 0
    with open(hawserd.config_file, "a", encoding="utf-8") as f:
        f.write(f'[registry]\npolicy = "{policy}"\n')
    hawserd.start()
    hawserd.plain_http(registry.host)
    images = hawserd.client().images

    def refused(ref: str) -> str:
        code, message = status_code(images.PullImage, pull_request(ref))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, message)
        assert "\n" not in message and message.startswith("SignatureValidationFailed:"), message
        assert not images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref))).HasField("image")
        return message

    unsigned, unsigned_image = _push(push_client, registry, "unsigned")
    assert 'scope docker:"": no signature' in refused(unsigned)
    layer = unsigned_image.layers[0][0].digest.encoded
    assert layer not in _blobs(hawserd)  # refused before any layer was fetched

    signed, signed_image = _push(push_client, registry, "signed")
    _sign(push_client, signed, signed_image, trusted_key)
    pulled = images.PullImage(pull_request(signed))
    assert pulled.image_ref

    by_other, other_image = _push(push_client, registry, "other-key")
    _sign(push_client, by_other, other_image, other_key)
    assert "no signature by a trusted key" in refused(by_other)

    tampered, tampered_image = _push(push_client, registry, "tampered")
    _sign(push_client, tampered, tampered_image, trusted_key, for_image=signed_image)
    assert f"a signature is for {signed_image.manifest_desc.digest}" in refused(tampered)

    # Per scope: one repository rejected, another taken unsigned; the signed one still needs its signature.
    host = registry.host
    write_policy({**signed_only, f"{host}/e2e-policy/unsigned": [{"type": "insecureAcceptAnything"}],
                  f"{host}/e2e-policy/signed": [{"type": "reject"}]})
    assert images.PullImage(pull_request(unsigned)).image_ref
    # The signed image is held already: the pull worker's checker checks it again, and refuses it.
    code, message = status_code(images.PullImage, pull_request(signed))
    assert code == grpc.StatusCode.PERMISSION_DENIED, (code, message)
    assert f"scope docker:{host}/e2e-policy/signed: the policy rejects it" in message, message
    assert "no signature by a trusted key" in refused(by_other)

    # ctr pulls through containerd's API (Content, then Images.Create names the image): the same policy.
    write_policy(signed_only)
    denied = ctr(hawserd, "images", "pull", "--plain-http", unsigned, check=False)
    assert denied.returncode != 0 and "SignatureValidationFailed" in denied.stderr, denied.stderr
    assert unsigned not in ctr(hawserd, "images", "ls", "-q").stdout.split()
    rejected_by_key = ctr(hawserd, "images", "pull", "--plain-http", by_other, check=False)
    assert rejected_by_key.returncode != 0 and "no signature by a trusted key" in rejected_by_key.stderr
    ctr(hawserd, "images", "pull", "--plain-http", signed)
    assert signed in ctr(hawserd, "images", "ls", "-q").stdout.split()
    # Retagging onto an unsigned image's target is a new name for it: checked too.
    moved = ctr(hawserd, "images", "tag", signed, f"{host}/e2e-policy/other-key:1", check=False)
    assert moved.returncode != 0
