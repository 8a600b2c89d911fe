"""Signature policy on `hawser pull`: cosign signatures written by `hawser image
sign` into a real docker-registry, checked against a containers-policy.json."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from hawser.errors import NotFound
from hawser.images._policy import sig_tag
from hawser.images._sign import push_signature, sign_payload, signature_payload
from hawser.oci import Digest, parse_reference
from hawser.registry import RegistryClient
from tests.integration.conftest import Env, one_line
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.registry_fixtures import Registry


def _image(name: str) -> BuiltImage:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = f"image {name}\n".encode()
        info = tarfile.TarInfo(f"etc/{name}")
        info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return build_image([buf.getvalue()])


class Keys:
    def __init__(self, directory: Path, env: Env) -> None:
        self.trusted = str(directory / "trusted")
        self.other = str(directory / "other")
        for prefix in (self.trusted, self.other):
            out = env.cli("image", "sign", "--generate-key", prefix).stdout
            assert f"wrote {prefix}.key and {prefix}.pub" in out


@pytest.fixture
def keys(tmp_path: Path, overlay_env: Env) -> Keys:
    return Keys(tmp_path, overlay_env)


def _push(push_client: RegistryClient, registry: Registry, repo: str, tag: str = "1") -> tuple[str, BuiltImage]:
    image = _image(f"{repo.replace('/', '-')}-{tag}")
    ref = f"{registry.host}/policy/{repo}:{tag}"
    push_image(push_client, ref, image, tag=tag)
    return ref, image


def _policy(tmp_path: Path, doc: dict[str, object], name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def _signed_by(key_pub: str, default: str = "reject") -> dict[str, object]:
    return {"default": [{"type": default}],
            "transports": {"docker": {"": [{"type": "sigstoreSigned", "keyPath": key_pub}]}}}


def _stored(env: Env) -> tuple[list[str], list[str]]:
    """The store's image ids and blob digests."""
    names = env.cli("images", "-q").stdout.split()
    blobs = os.path.join(env.root, "content", "blobs", "sha256")
    return names, sorted(os.listdir(blobs)) if os.path.isdir(blobs) else []


def test_unsigned_refused_signed_accepted_other_key_refused(overlay_env: Env, keys: Keys, tmp_path: Path,
                                                           registry: Registry, push_client: RegistryClient) -> None:
    policy = _policy(tmp_path, _signed_by(f"{keys.trusted}.pub"))
    unsigned, _ = _push(push_client, registry, "unsigned")
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, unsigned, check=False))
    assert "SignatureValidationFailed" in line and 'scope docker:""' in line and "no signature" in line, line
    # Refused after the resolve, before anything is fetched: nothing of it kept.
    assert _stored(overlay_env) == ([], [])

    signed, image = _push(push_client, registry, "signed")
    out = overlay_env.cli("image", "sign", "--plain-http", "--key", f"{keys.trusted}.key", signed).stdout
    assert str(image.manifest_desc.digest) in out
    out = overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, signed).stdout
    assert str(image.manifest_desc.digest) in out

    by_other, _ = _push(push_client, registry, "other-key")
    overlay_env.cli("image", "sign", "--plain-http", "--key", f"{keys.other}.key", by_other)
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, by_other, check=False))
    assert "no signature by a trusted key" in line, line
    assert len(_stored(overlay_env)[0]) == 1  # the signed image alone

    # A second signature by the trusted key is added beside the other: now accepted.
    overlay_env.cli("image", "sign", "--plain-http", "--key", f"{keys.trusted}.key", by_other)
    overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, by_other)


def test_tampered_refused(overlay_env: Env, keys: Keys, tmp_path: Path, registry: Registry,
                          push_client: RegistryClient) -> None:
    policy = _policy(tmp_path, _signed_by(f"{keys.trusted}.pub"))
    good, good_image = _push(push_client, registry, "tampered", "good")
    evil, evil_image = _push(push_client, registry, "tampered", "evil")
    # The good image's signed payload, copied beside the evil image's digest: a valid signature of another digest.
    ref = parse_reference(evil)
    payload = signature_payload(ref, good_image.manifest_desc.digest)
    push_signature(push_client, ref, evil_image.manifest_desc.digest, payload,
                   sign_payload(f"{keys.trusted}.key", payload))
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, evil, check=False))
    assert f"a signature is for {good_image.manifest_desc.digest}" in line, line

    # A payload naming another repository, signed by the trusted key.
    other_repo = parse_reference(f"{registry.host}/policy/elsewhere:1")
    payload = signature_payload(other_repo, good_image.manifest_desc.digest)
    push_signature(push_client, parse_reference(good), good_image.manifest_desc.digest, payload,
                   sign_payload(f"{keys.trusted}.key", payload))
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, good, check=False))
    assert "policy/elsewhere" in line, line

    # A signature whose bytes were altered: the annotation no longer matches the payload.
    moved, moved_image = _push(push_client, registry, "tampered", "moved")
    moved_ref = parse_reference(moved)
    payload = signature_payload(moved_ref, moved_image.manifest_desc.digest)
    signature = bytearray(sign_payload(f"{keys.trusted}.key", payload))
    signature[-1] ^= 1
    push_signature(push_client, moved_ref, moved_image.manifest_desc.digest, payload, bytes(signature))
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, moved, check=False))
    assert "no signature by a trusted key" in line, line
    assert _stored(overlay_env) == ([], [])


def test_scopes(overlay_env: Env, keys: Keys, tmp_path: Path, registry: Registry,
                push_client: RegistryClient) -> None:
    open_ref, _ = _push(push_client, registry, "scoped/open")
    closed_ref, _ = _push(push_client, registry, "scoped/closed")
    tagged_ref, _ = _push(push_client, registry, "scoped/closed", "trusted-tag")
    host = registry.host
    policy = _policy(tmp_path, {
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            f"{host}/policy/scoped": [{"type": "sigstoreSigned", "keyPath": f"{keys.trusted}.pub"}],
            f"{host}/policy/scoped/open": [{"type": "insecureAcceptAnything"}],
            f"{host}/policy/scoped/closed": [{"type": "reject"}],
            f"{host}/policy/scoped/closed:trusted-tag": [{"type": "insecureAcceptAnything"}],
        }},
    })
    overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, open_ref)
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, closed_ref, check=False))
    assert f"scope docker:{host}/policy/scoped/closed: the policy rejects it" in line, line
    overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, tagged_ref)
    # The namespace's scope for a repository under it with no scope of its own.
    app_ref, _ = _push(push_client, registry, "scoped/app")
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, app_ref, check=False))
    assert f"scope docker:{host}/policy/scoped: no signature" in line, line
    overlay_env.cli("image", "sign", "--plain-http", "--key", f"{keys.trusted}.key", app_ref)
    overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, app_ref)
    # No scope of the transport matches an image outside policy/scoped: the top-level default rejects it.
    outside, _ = _push(push_client, registry, "outside")
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", policy, outside, check=False))
    assert "scope default" in line, line
    # An image present already is checked again (the configured policy, through the config file).
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write(f'[registry]\npolicy = "{_policy(tmp_path, {"default": [{"type": "reject"}]}, "reject.json")}"\n')
    line = one_line(overlay_env.cli("pull", "--plain-http", open_ref, check=False))
    assert "scope default: the policy rejects it" in line, line


def test_malformed_policy_one_line(overlay_env: Env, tmp_path: Path, registry: Registry,
                                   push_client: RegistryClient) -> None:
    ref, _ = _push(push_client, registry, "malformed")
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": [{"type": "acceptEverything"}]}')
    line = one_line(overlay_env.cli("pull", "--plain-http", "--signature-policy", str(bad), ref, check=False))
    assert "unknown requirement type 'acceptEverything'" in line, line
    assert _stored(overlay_env) == ([], [])


def test_sign_refuses_bad_key(overlay_env: Env, tmp_path: Path, registry: Registry,
                              push_client: RegistryClient) -> None:
    ref, _ = _push(push_client, registry, "badkey")
    key = tmp_path / "not-a-key.pem"
    key.write_text("nonsense")
    line = one_line(overlay_env.cli("image", "sign", "--plain-http", "--key", str(key), ref, check=False))
    assert "not an unencrypted PEM private key" in line, line
    client_ref = parse_reference(ref)
    image_digest = push_client.resolve(client_ref).descriptor.digest
    with pytest.raises(NotFound):  # nothing pushed
        push_client.resolve(parse_reference(f"{client_ref.name}:{sig_tag(Digest(image_digest))}"))
