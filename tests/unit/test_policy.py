"""Signature policy (images._policy): containers-policy.json parsing, scope
matching, and cosign signature checks against an in-memory registry."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hawser.errors import InvalidArgument, NotFound, PermissionDenied
from hawser.images._policy import (
    ACCEPT,
    REJECT,
    SIGNATURE_ANNOTATION,
    SIGSTORE,
    SIMPLE_SIGNING,
    enforce_policy,
    parse_policy,
    sig_tag,
)
from hawser.images._sign import signature_payload
from hawser.oci import Descriptor, Digest, Reference, media, parse_reference
from hawser.registry import Resolved

IMAGE = parse_reference("127.0.0.1:5000/team/app:1.0")
DIGEST = Digest.of(b"the image's manifest")


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


TRUSTED = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


class FakeRegistry:
    """What enforce_policy asks of a RegistryClient: resolve and fetch_blob_bytes."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[Descriptor, bytes]] = {}
        self.blobs: dict[str, bytes] = {}

    def resolve(self, ref: Reference) -> Resolved:
        try:
            desc, data = self.manifests[f"{ref.name}:{ref.tag}"]
        except KeyError:
            raise NotFound(f"manifest {ref}") from None
        return Resolved(descriptor=desc, data=data)

    def fetch_blob_bytes(self, ref: Reference, desc: Descriptor, *, limit: int = 0) -> bytes:
        return self.blobs[str(desc.digest)]

    def sign(self, signatures: Sequence[tuple[bytes, bytes]], digest: Digest = DIGEST) -> None:
        layers = []
        for payload, signature in signatures:
            self.blobs[str(Digest.of(payload))] = payload
            layers.append(Descriptor(media_type=SIMPLE_SIGNING, digest=Digest.of(payload), size=len(payload),
                                     annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}))
        config = Descriptor(media_type=media.OCI_CONFIG, digest=Digest.of(b"{}"), size=2)
        data = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "config": config.to_json(),
                           "layers": [d.to_json() for d in layers]}).encode()
        desc = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(data), size=len(data))
        self.manifests[f"{IMAGE.name}:{sig_tag(digest)}"] = (desc, data)


def _signed(key: ec.EllipticCurvePrivateKey, payload: bytes) -> tuple[bytes, bytes]:
    return payload, key.sign(payload, ec.ECDSA(hashes.SHA256()))


def _policy_file(tmp_path: Path, doc: object) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _sigstore(tmp_path: Path, **identity: str) -> str:
    key = tmp_path / "trusted.pub"
    key.write_text(_pem(TRUSTED))
    req: dict[str, object] = {"type": SIGSTORE, "keyPath": "trusted.pub"}  # relative: beside the policy
    if identity:
        req["signedIdentity"] = identity
    return _policy_file(tmp_path, {"default": [{"type": REJECT}], "transports": {"docker": {"": [req]}}})


def _root(digest: Digest = DIGEST) -> Descriptor:
    return Descriptor(media_type=media.OCI_MANIFEST, digest=digest, size=10)


def _enforce(path: str, registry: FakeRegistry, ref: Reference = IMAGE) -> None:
    enforce_policy(path, registry, ref, _root())  # type: ignore[arg-type]


# --- parsing and scopes ---------------------------------------------------------------


def test_scope_most_specific_wins() -> None:
    policy = parse_policy(json.dumps({
        "default": [{"type": REJECT}],
        "transports": {
            "docker": {
                "": [{"type": ACCEPT}],
                "127.0.0.1:5000": [{"type": REJECT}],
                "127.0.0.1:5000/team": [{"type": ACCEPT}],
                "127.0.0.1:5000/team/app": [{"type": REJECT}],
                "127.0.0.1:5000/team/app:1.0": [{"type": ACCEPT}],
                "*.example.com": [{"type": REJECT}],
            },
            "docker-daemon": {"": [{"type": ACCEPT}]},
        },
    }).encode())

    def scope(text: str) -> str:
        return policy.requirements_for(parse_reference(text))[0]

    assert scope("127.0.0.1:5000/team/app:1.0") == "docker:127.0.0.1:5000/team/app:1.0"
    assert scope("127.0.0.1:5000/team/app:2.0") == "docker:127.0.0.1:5000/team/app"
    assert scope("127.0.0.1:5000/team/other:1") == "docker:127.0.0.1:5000/team"
    assert scope("127.0.0.1:5000/solo:1") == "docker:127.0.0.1:5000"
    assert scope("registry.example.com/a/b:1") == "docker:*.example.com"
    assert scope("127.0.0.2:5000/x:1") == 'docker:""'
    assert policy.requirements_for(parse_reference("127.0.0.1:5000/solo:1"))[1][0].kind == REJECT


def test_default_when_the_transport_has_no_match() -> None:
    policy = parse_policy(b'{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {}}}')
    scope, reqs = policy.requirements_for(IMAGE)
    assert scope == "default" and [r.kind for r in reqs] == [ACCEPT]


@pytest.mark.parametrize(("text", "why"), [
    (b"{", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"transports": {}}', 'no "default"'),
    (b'{"default": []}', "non-empty list"),
    (b'{"default": [{"type": "acceptEverything"}]}', "unknown requirement type"),
    (b'{"default": [{"type": "reject", "keyPath": "x"}]}', "reject takes no field 'keyPath'"),
    (b'{"default": [{"type": "sigstoreSigned"}]}', "needs keyPath"),
    (b'{"default": [{"type": "sigstoreSigned", "keyData": "!!"}]}', "keyData is not base64"),
    (b'{"default": [{"type": "sigstoreSigned", "keyPath": "/nonexistent/key.pub"}]}', "keyPath /nonexistent"),
    (b'{"default": [{"type": "sigstoreSigned", "keyData": "aGVsbG8="}]}', "not a PEM public key"),
    (b'{"default": [{"type": "reject"}], "transports": {"docker": []}}', "not an object of scopes"),
    (b'{"default": [{"type": "reject"}], "transports": {"docker": {"a b": [{"type": "reject"}]}}}', "invalid docker scope"),
    (b'{"default": [{"type": "reject"}], "extra": 1}', "unknown field 'extra'"),
    (b'{"default": [{"type": "sigstoreSigned", "keyData": "aGVsbG8=", "signedIdentity": {"type": "x"}}]}',
     "invalid signedIdentity"),
])
def test_malformed_policies_refused_in_one_line(text: bytes, why: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_policy(text, source="/etc/p.json")
    message = str(caught.value)
    assert why in message and "/etc/p.json" in message and "\n" not in message, message


def test_rsa_key_refused() -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = {"default": [{"type": SIGSTORE, "keyData": base64.b64encode(pem).decode()}]}
    with pytest.raises(InvalidArgument, match="not an ECDSA public key"):
        parse_policy(json.dumps(doc).encode())


def test_key_data_base64_or_pem() -> None:
    pem = _pem(TRUSTED)
    for data in (base64.b64encode(pem.encode()).decode(), pem):
        policy = parse_policy(json.dumps({"default": [{"type": SIGSTORE, "keyData": data}]}).encode())
        assert policy.default[0].keys == (pem.encode(),)


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read it"):
        _enforce(str(tmp_path / "missing.json"), FakeRegistry())


# --- evaluation -----------------------------------------------------------------------


def test_no_policy_accepts_without_asking_the_registry() -> None:
    enforce_policy("", None, IMAGE, _root())  # type: ignore[arg-type]


def test_signed_accepted(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.sign([_signed(TRUSTED, signature_payload(IMAGE, DIGEST))])
    _enforce(_sigstore(tmp_path), registry)


def test_unsigned_refused(tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied, match=r'^SignatureValidationFailed: .* scope docker:"": no signature'):
        _enforce(_sigstore(tmp_path), FakeRegistry())


def test_other_key_refused_one_trusted_among_many_accepted(tmp_path: Path) -> None:
    registry = FakeRegistry()
    payload = signature_payload(IMAGE, DIGEST)
    registry.sign([_signed(OTHER, payload)])
    with pytest.raises(PermissionDenied, match="no signature by a trusted key"):
        _enforce(_sigstore(tmp_path), registry)
    registry.sign([_signed(OTHER, payload), _signed(TRUSTED, payload)])
    _enforce(_sigstore(tmp_path), registry)


def test_payload_for_another_digest_refused(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.sign([_signed(TRUSTED, signature_payload(IMAGE, Digest.of(b"another manifest")))])
    with pytest.raises(PermissionDenied, match="a signature is for sha256:"):
        _enforce(_sigstore(tmp_path), registry)


def test_altered_payload_refused(tmp_path: Path) -> None:
    registry = FakeRegistry()
    payload, signature = _signed(TRUSTED, signature_payload(IMAGE, DIGEST))
    registry.sign([(payload.replace(b"team/app", b"team/apq"), signature)])
    with pytest.raises(PermissionDenied, match="no signature by a trusted key"):
        _enforce(_sigstore(tmp_path), registry)


def test_identity(tmp_path: Path) -> None:
    registry = FakeRegistry()
    elsewhere = parse_reference("127.0.0.1:5000/team/elsewhere")
    registry.sign([_signed(TRUSTED, signature_payload(elsewhere, DIGEST))])
    with pytest.raises(PermissionDenied, match=re.escape("is for 127.0.0.1:5000/team/elsewhere")):
        _enforce(_sigstore(tmp_path), registry)
    _enforce(_sigstore(tmp_path, type="exactRepository", dockerRepository="127.0.0.1:5000/team/elsewhere"),
             registry)
    # A signature naming a tag holds for that tag under matchExact, for any under matchRepository.
    tagged = parse_reference("127.0.0.1:5000/team/app:0.9")
    registry.sign([_signed(TRUSTED, signature_payload(tagged, DIGEST).replace(b'"127.0.0.1:5000/team/app"',
                                                                             b'"127.0.0.1:5000/team/app:0.9"'))])
    with pytest.raises(PermissionDenied):
        _enforce(_sigstore(tmp_path, type="matchExact"), registry)
    _enforce(_sigstore(tmp_path, type="matchRepository"), registry)


def test_all_requirements_must_hold_and_unverifiable_ones_refuse(tmp_path: Path) -> None:
    registry = FakeRegistry()
    both = _policy_file(tmp_path, {"default": [{"type": ACCEPT}, {"type": REJECT}]})
    with pytest.raises(PermissionDenied, match="scope default: the policy rejects it"):
        _enforce(both, registry)
    gpg = _policy_file(tmp_path, {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "k"}]})
    with pytest.raises(PermissionDenied, match="signedBy"):
        _enforce(gpg, registry)
