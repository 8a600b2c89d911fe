"""Signature policy: containers-policy.json, as podman and CRI-O read it, and
cosign's signatures.

A policy file names, per transport and scope, the requirements an image must
meet; hawser pulls only from the ``docker`` transport, so it looks there:

    {"default": [{"type": "reject"}],
     "transports": {"docker": {
        "127.0.0.1:5000/app": [{"type": "sigstoreSigned", "keyPath": "/etc/keys/app.pub"}],
        "127.0.0.1:5000": [{"type": "insecureAcceptAnything"}]}}}

The most specific scope wins: the reference with its tag (or digest), the
repository, each parent namespace, the host (then ``*.domain`` wildcards),
the transport's ``""``, then ``default``.  Every requirement of the chosen
list must hold.  Requirement types:

- ``insecureAcceptAnything``: accepted;
- ``reject``: refused;
- ``sigstoreSigned`` with ``keyPath``/``keyPaths``/``keyData``/``keyDatas``
  (a PEM public key; keyData base64 of it, as the man page says): a cosign
  signature by one of the keys, over a payload naming the image's manifest
  digest and its repository;
- ``signedBy`` (GPG) and sigstore's Fulcio keyless signing are read but
  refuse: hawser cannot verify them, and a policy that asks for them must
  not let an image through unchecked.

cosign's convention: the signatures of the manifest ``sha256:HEX`` are the
layers of the manifest tagged ``sha256-HEX.sig`` in the same repository, each
a simple-signing JSON payload with the annotation
``dev.cosignproject.cosign/signature`` = base64 of the ECDSA signature
(SHA-256) of the payload's bytes.

A refusal is a PermissionDenied whose message starts as CRI-O's
(``SignatureValidationFailed``, kubelet's reason for it) and names the scope.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hawser._dataclass import dataclass
from hawser.errors import HawserError, InvalidArgument, NotFound, PermissionDenied
from hawser.oci import Descriptor, Digest, Reference, media, parse_manifest

if TYPE_CHECKING:
    from hawser.config import Config
    from hawser.registry import RegistryClient

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_TYPE = "cosign container image signature"
# A signature payload is a few hundred bytes; more is not one.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SIGNATURES = 32
DEFAULT_SCOPE = "default"

ACCEPT = "insecureAcceptAnything"
REJECT = "reject"
SIGSTORE = "sigstoreSigned"
SIGNED_BY = "signedBy"
_TYPES = (ACCEPT, REJECT, SIGSTORE, SIGNED_BY)
_IDENTITIES = ("matchRepoDigestOrExact", "matchRepository", "matchExact", "exactReference", "exactRepository",
               "remapIdentity")


@dataclass(frozen=True, slots=True)
class Requirement:
    kind: str
    keys: tuple[bytes, ...] = ()  # PEM public keys (sigstoreSigned)
    identity: str = "matchRepoDigestOrExact"
    identity_value: str = ""  # exactReference's dockerReference, exactRepository's dockerRepository
    unsupported: str = ""  # why this requirement can never be met here


@dataclass(frozen=True, slots=True)
class Policy:
    source: str
    default: tuple[Requirement, ...]
    docker: Mapping[str, tuple[Requirement, ...]]

    def requirements_for(self, ref: Reference) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that applies to ``ref`` and its requirements."""
        for scope in _scopes(ref):
            if scope in self.docker:
                return f"docker:{scope}" if scope else 'docker:""', self.docker[scope]
        return DEFAULT_SCOPE, self.default


def _scopes(ref: Reference) -> list[str]:
    named = ref.name
    scopes: list[str] = []
    if ref.digest is not None:
        scopes.append(f"{named}@{ref.digest}")
    if ref.tag:
        scopes.append(f"{named}:{ref.tag}")
    parts = named.split("/")
    scopes += ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
    host = ref.domain.split(":")[0]
    labels = host.split(".")
    scopes += ["*." + ".".join(labels[n:]) for n in range(1, len(labels))]
    scopes.append("")
    return scopes


# --- parsing ---------------------------------------------------------------------------


def load_policy(path: str) -> Policy:
    """Read and check the policy file ``path``.  Raises InvalidArgument (one line) on anything malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as exc:
        raise InvalidArgument(f"signature policy {path}: cannot read it: {exc.strerror}") from None
    return parse_policy(data, source=path)


def parse_policy(data: bytes, *, source: str = "policy") -> Policy:
    """The policy in ``data`` (a containers-policy.json); relative keyPaths are
    taken from ``source``'s directory.  Raises InvalidArgument."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"signature policy {source}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"signature policy {source}: not a JSON object")
    unknown = set(doc) - {"default", "transports"}
    if unknown:
        raise InvalidArgument(f"signature policy {source}: unknown field {sorted(unknown)[0]!r}")
    if "default" not in doc:
        raise InvalidArgument(f"signature policy {source}: no \"default\" requirements")
    base = os.path.dirname(os.path.abspath(source))
    default = _requirements(doc["default"], f"{source}: default", base)
    transports = doc.get("transports", {})
    if not isinstance(transports, dict):
        raise InvalidArgument(f"signature policy {source}: \"transports\" is not an object")
    docker: dict[str, tuple[Requirement, ...]] = {}
    for transport, scopes in transports.items():
        if not isinstance(scopes, dict):
            raise InvalidArgument(f"signature policy {source}: transport {transport!r} is not an object of scopes")
        for scope, reqs in scopes.items():
            parsed = _requirements(reqs, f"{source}: {transport}:{scope!r}", base)
            if transport == "docker":
                _check_scope(scope, source)
                docker[scope] = parsed
    return Policy(source=source, default=default, docker=docker)


def _check_scope(scope: str, source: str) -> None:
    if scope == "":
        return
    if scope.startswith("*."):
        if "/" in scope or ":" in scope or len(scope) < 3:
            raise InvalidArgument(f"signature policy {source}: invalid docker scope {scope!r}")
        return
    if any(c.isspace() for c in scope) or scope.startswith("/") or scope.endswith("/") or "//" in scope:
        raise InvalidArgument(f"signature policy {source}: invalid docker scope {scope!r}")


def _requirements(value: object, where: str, base: str) -> tuple[Requirement, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"signature policy {where}: requirements must be a non-empty list")
    return tuple(_requirement(item, where, base) for item in value)


def _requirement(item: object, where: str, base: str) -> Requirement:
    if not isinstance(item, dict):
        raise InvalidArgument(f"signature policy {where}: a requirement is not an object")
    kind = item.get("type")
    if kind not in _TYPES:
        raise InvalidArgument(f"signature policy {where}: unknown requirement type {kind!r}")
    if kind in (ACCEPT, REJECT):
        extra = set(item) - {"type"}
        if extra:
            raise InvalidArgument(f"signature policy {where}: {kind} takes no field {sorted(extra)[0]!r}")
        return Requirement(kind=str(kind))
    identity, identity_value = _identity(item.get("signedIdentity"), where)
    if kind == SIGNED_BY:
        return Requirement(kind=SIGNED_BY, identity=identity, identity_value=identity_value,
                           unsupported="signedBy (GPG) signatures cannot be verified by hawser")
    keys: list[bytes] = []
    paths = _strings(item, "keyPath", "keyPaths", where)
    datas = _strings(item, "keyData", "keyDatas", where)
    for path in paths:
        full = path if os.path.isabs(path) else os.path.join(base, path)
        try:
            with open(full, "rb") as f:
                keys.append(f.read(1 << 16))
        except OSError as exc:
            raise InvalidArgument(f"signature policy {where}: keyPath {path}: {exc.strerror}") from None
    for text in datas:
        if text.lstrip().startswith("-----BEGIN"):
            keys.append(text.encode())
            continue
        try:
            keys.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"signature policy {where}: keyData is not base64") from None
    if "fulcio" in item:
        if keys:
            raise InvalidArgument(f"signature policy {where}: sigstoreSigned takes keys or fulcio, not both")
        return Requirement(kind=SIGSTORE, identity=identity, identity_value=identity_value,
                           unsupported="sigstoreSigned with fulcio (keyless) cannot be verified by hawser")
    if not keys:
        raise InvalidArgument(f"signature policy {where}: sigstoreSigned needs keyPath, keyPaths, keyData or keyDatas")
    for key in keys:
        _public_key(key, where)
    return Requirement(kind=SIGSTORE, keys=tuple(keys), identity=identity, identity_value=identity_value)


def _strings(item: Mapping[str, Any], one: str, many: str, where: str) -> list[str]:
    out: list[str] = []
    if one in item:
        if not isinstance(item[one], str) or not item[one]:
            raise InvalidArgument(f"signature policy {where}: {one} must be a non-empty string")
        out.append(item[one])
    if many in item:
        values = item[many]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise InvalidArgument(f"signature policy {where}: {many} must be a non-empty list of strings")
        out += values
    return out


def _identity(value: object, where: str) -> tuple[str, str]:
    if value is None:
        return "matchRepoDigestOrExact", ""
    if not isinstance(value, dict) or value.get("type") not in _IDENTITIES:
        raise InvalidArgument(f"signature policy {where}: invalid signedIdentity")
    kind = str(value["type"])
    if kind == "exactReference":
        return kind, str(value.get("dockerReference", ""))
    if kind == "exactRepository":
        return kind, str(value.get("dockerRepository", ""))
    return kind, ""


def _public_key(pem: bytes, where: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise InvalidArgument(f"signature policy {where}: a key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidArgument(f"signature policy {where}: a key is not an ECDSA public key")
    return key


# --- evaluation ------------------------------------------------------------------------


def enforce_policy(path: str, client: RegistryClient, ref: Reference, root: Descriptor) -> None:
    """Refuse (PermissionDenied) the image ``ref`` resolved to ``root`` unless
    the policy file ``path`` accepts it; "" is no policy: all accepted.
    Reads only: signatures from the registry, nothing stored."""
    if not path:
        return
    policy = load_policy(path)
    scope, requirements = policy.requirements_for(ref)
    for requirement in requirements:
        why = _unmet(requirement, client, ref, root.digest)
        if why:
            raise PermissionDenied(f"SignatureValidationFailed: {ref} refused by policy {policy.source} "
                                   f"scope {scope}: {why}",
                                   hint="sign the image (hawser image sign --key KEY.pem IMAGE) "
                                        "or change the policy")


def enforce_on_record(config: Config, name: str, target: Descriptor) -> None:
    """The policy of ``config`` (``registry.policy``) applied to an image
    record a client writes itself (containerd's Images.Create and Update:
    ``ctr pull`` fetches through Content and names the image last): as for a
    pull, PermissionDenied unless it accepts ``target`` under ``name``.  A
    name that is no registry reference (a local import's) has no scope in
    the policy's ``docker`` transport and is not checked."""
    if not config.registry.policy:
        return
    from hawser.images._service import registry_options
    from hawser.oci import parse_reference
    from hawser.registry import RegistryClient

    try:
        ref = parse_reference(name)
    except InvalidArgument:
        return
    with RegistryClient(registry_options(config)) as client:
        enforce_policy(config.registry.policy, client, ref, target)


def _unmet(requirement: Requirement, client: RegistryClient, ref: Reference, digest: Digest) -> str:
    """Why ``requirement`` does not hold for the image (empty: it holds)."""
    if requirement.kind == ACCEPT:
        return ""
    if requirement.kind == REJECT:
        return "the policy rejects it"
    if requirement.unsupported:
        return requirement.unsupported
    signatures = _signatures(client, ref, digest)
    if not signatures:
        return f"no signature of {digest} (tag {sig_tag(digest)})"
    keys = [_public_key(key, "key") for key in requirement.keys]
    reasons: list[str] = []
    for payload, signature in signatures:
        why = _check_signature(requirement, keys, payload, signature, ref, digest)
        if not why:
            return ""
        reasons.append(why)
    return "; ".join(dict.fromkeys(reasons))


def sig_tag(digest: Digest) -> str:
    return f"{digest.algorithm}-{digest.encoded}.sig"


def _signatures(client: RegistryClient, ref: Reference, digest: Digest) -> list[tuple[bytes, bytes]]:
    """(payload, signature) of each cosign signature of ``digest`` in ``ref``'s repository."""
    sig_ref = Reference(domain=ref.domain, path=ref.path, tag=sig_tag(digest))
    try:
        resolved = client.resolve(sig_ref)
    except NotFound:
        return []
    if resolved.descriptor.media_type not in media.MANIFESTS:
        return []
    manifest = parse_manifest(resolved.data, resolved.descriptor.media_type)
    out: list[tuple[bytes, bytes]] = []
    for layer in manifest.layers[:MAX_SIGNATURES]:
        encoded = layer.annotations.get(SIGNATURE_ANNOTATION, "")
        if layer.media_type != SIMPLE_SIGNING or not encoded or layer.size > MAX_PAYLOAD_BYTES:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        try:
            payload = client.fetch_blob_bytes(sig_ref, layer, limit=MAX_PAYLOAD_BYTES)
        except HawserError:
            continue
        out.append((payload, signature))
    return out


def _check_signature(requirement: Requirement, keys: Sequence[Any], payload: bytes, signature: bytes,
                     ref: Reference, digest: Digest) -> str:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    for key in keys:
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            break
        except (InvalidSignature, ValueError):
            continue
    else:
        return "no signature by a trusted key"
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        kind = critical["type"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        signed_ref = critical["identity"]["docker-reference"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return "a signed payload is malformed"
    if kind != COSIGN_TYPE:
        return f"a signed payload is of type {kind!r}"
    if signed_digest != str(digest):
        return f"a signature is for {signed_digest}, not {digest}"
    if not isinstance(signed_ref, str) or not _identity_matches(requirement, signed_ref, ref):
        return f"a signature is for {signed_ref}, not {ref.name}"
    return ""


def _identity_matches(requirement: Requirement, signed: str, ref: Reference) -> bool:
    from hawser.oci import parse_reference

    try:
        # cosign names the repository alone: no tag is taken as "any tag", not as ":latest".
        signed_ref = parse_reference(signed, default_tag="")
    except InvalidArgument:
        return False
    kind = requirement.identity
    if kind == "exactRepository":
        return signed_ref.name == requirement.identity_value
    if kind == "exactReference":
        return signed == requirement.identity_value
    if kind == "remapIdentity":
        return False
    if signed_ref.name != ref.name:
        return False
    if kind == "matchRepository" or not signed_ref.tag:
        return True
    # matchExact, matchRepoDigestOrExact: a signature naming a tag holds for that tag only.
    return ref.tag == signed_ref.tag or (kind == "matchRepoDigestOrExact" and ref.digest is not None)
