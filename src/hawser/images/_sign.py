"""``hawser image sign``: a cosign-format signature of an image in a registry.

The image's manifest digest (resolved at its registry, as a pull will see
it) goes into a simple-signing payload; the payload is signed with an ECDSA
P-256 key (SHA-256) and pushed as a layer of the manifest tagged
``sha256-HEX.sig`` beside the image, the signature base64 in the layer's
``dev.cosignproject.cosign/signature`` annotation, as cosign does.  Signatures
already there are kept: a new one is added to their manifest.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

from hawser.errors import InvalidArgument, NotFound
from hawser.images._policy import COSIGN_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING, sig_tag
from hawser.oci import Descriptor, Digest, Reference, media, parse_manifest, parse_reference
from hawser.registry import RegistryClient

if TYPE_CHECKING:
    from hawser.config import Config

# cosign's signature manifests carry an image config naming the payloads as its layers' diff ids.
_EMPTY_TIME = "0001-01-01T00:00:00Z"


def generate_signing_key(prefix: str) -> tuple[str, str]:
    """Write a new ECDSA P-256 key pair: ``PREFIX.key`` (PKCS#8 PEM, mode 0600)
    and ``PREFIX.pub`` (PEM); returns their paths.  Refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = f"{prefix}.key", f"{prefix}.pub"
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for path, data, mode in ((private, private_pem, 0o600), (public, public_pem, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise InvalidArgument(f"{path} exists already", hint="choose another prefix") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return private, public


def _private_key(path: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as exc:
        raise InvalidArgument(f"key {path}: cannot read it: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument(f"key {path}: not an ECDSA private key")
    return key


def signature_payload(ref: Reference, digest: Digest) -> bytes:
    """The simple-signing payload cosign signs for ``digest`` in ``ref``'s repository."""
    doc = {"critical": {"identity": {"docker-reference": ref.name},
                        "image": {"docker-manifest-digest": str(digest)},
                        "type": COSIGN_TYPE},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def sign_payload(key_path: str, payload: bytes) -> bytes:
    """The DER ECDSA (SHA-256) signature of ``payload`` by the key at ``key_path``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature: bytes = _private_key(key_path).sign(payload, ec.ECDSA(hashes.SHA256()))
    return signature


def push_signature(client: RegistryClient, ref: Reference, digest: Digest, payload: bytes,
                   signature: bytes) -> Descriptor:
    """Add the signature (``payload``, ``signature``) of ``digest`` to its
    ``sha256-HEX.sig`` manifest in ``ref``'s repository; returns that manifest."""
    sig_ref = Reference(domain=ref.domain, path=ref.path, tag=sig_tag(digest))
    layer = Descriptor(media_type=SIMPLE_SIGNING, digest=Digest.of(payload), size=len(payload),
                       annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})
    layers: list[Descriptor] = []
    try:
        existing = client.resolve(sig_ref)
        if existing.descriptor.media_type in media.MANIFESTS:
            layers = list(parse_manifest(existing.data, existing.descriptor.media_type).layers)
    except NotFound:
        pass
    layers = [d for d in layers if d.annotations.get(SIGNATURE_ANNOTATION) != layer.annotations[SIGNATURE_ANNOTATION]]
    layers.append(layer)
    client.push_blob(sig_ref, payload, layer)
    config = json.dumps({
        "architecture": "", "config": {}, "created": _EMPTY_TIME,
        "history": [{"created": _EMPTY_TIME}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    }, separators=(",", ":")).encode()
    config_desc = Descriptor(media_type=media.OCI_CONFIG, digest=Digest.of(config), size=len(config))
    client.push_blob(sig_ref, config, config_desc)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layers],
    }, separators=(",", ":")).encode()
    return client.push_manifest(sig_ref, manifest, media.OCI_MANIFEST, tag=sig_ref.tag)


def sign_image(config: Config, reference: str, key_path: str, *, plain_http: bool = False,
               credentials: Any = None) -> tuple[Digest, Descriptor]:
    """Sign the image ``reference`` names at its registry (reached as a pull
    into a store of ``config`` would) with the key at ``key_path``; returns the
    signed manifest digest and the signature manifest's descriptor."""
    from hawser.images._service import registry_options

    ref = parse_reference(reference)
    _private_key(key_path)  # a bad key fails before the registry is asked
    with RegistryClient(registry_options(config, plain_http=plain_http, credentials=credentials)) as client:
        digest = ref.digest if ref.digest is not None else client.resolve(ref).descriptor.digest
        payload = signature_payload(ref, digest)
        return digest, push_signature(client, ref, digest, payload, sign_payload(key_path, payload))
