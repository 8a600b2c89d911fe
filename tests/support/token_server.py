"""A bearer-token server for tests: docker's token spec, JWTs signed with an EC key.

The registry (distribution) is configured with ``auth: token`` pointing its
``realm`` here and its ``rootcertbundle`` at :attr:`TokenServer.cert_path`.
Each token carries the signing certificate in its ``x5c`` header, which
distribution verifies against that bundle, and the claims distribution
checks: ``iss``, ``aud`` (the service), ``exp``/``nbf``/``iat``, ``jti`` and
the ``access`` list.

    with start_token_server(tmp, users={"alice": "secret"}, lifetime=2) as ts:
        ...  # ts.realm, ts.service, ts.issuer, ts.cert_path, ts.issued

Plain ``GET /token?service=..&scope=..`` with optional Basic auth is served,
and the OAuth2 ``POST /token`` refresh-token grant for identity tokens.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

SERVICE = "hawser-test-registry"
ISSUER = "hawser-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Issued:
    """One token handed out: to whom (empty for anonymous) and for which scopes."""

    subject: str
    scopes: tuple[str, ...]
    token: str


@dataclass
class TokenServer:
    """A running token server.  Stop it with :meth:`stop` or a ``with`` block."""

    realm: str
    service: str
    issuer: str
    cert_path: Path
    lifetime: int
    issued: list[Issued] = field(default_factory=list)
    refused: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _dir: Path | None = None
    _owns_dir: bool = False

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _make_key_and_cert(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hawser test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "token-signer.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER), cert_path


def _sign_jwt(key: ec.EllipticCurvePrivateKey, cert_der: bytes, claims: dict[str, object]) -> str:
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(cert_der).decode("ascii")]}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    # JWS ES256 signatures are r || s, 32 bytes each, not DER.
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _access(scopes: list[str], allowed: set[str]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) < 3 or parts[0] != "repository":
            continue
        # The name may contain ':' (a registry with a port); actions are last.
        name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
        granted = [a for a in actions if a in allowed]
        if granted:
            out.append({"type": "repository", "name": name, "actions": granted})
    return out


def start_token_server(directory: str | Path | None = None, *, users: Mapping[str, str] | None = None,
                       refresh_tokens: Mapping[str, str] | None = None, lifetime: int = 300,
                       allow_anonymous: bool = False, service: str = SERVICE,
                       issuer: str = ISSUER) -> TokenServer:
    """Start a token server on 127.0.0.1 (random port) in a daemon thread.

    ``users`` maps user -> password for Basic auth on GET; ``refresh_tokens``
    maps identity token -> user for the OAuth2 POST grant; ``allow_anonymous``
    grants pull (not push) to requests without credentials.  ``lifetime`` is
    the token's ``expires_in`` and ``exp`` in seconds (distribution adds 60s
    of leeway to ``exp``, so a short lifetime only shows on the client side).
    """
    owns = directory is None
    base = Path(tempfile.mkdtemp(prefix="hawser-token-")) if owns else Path(tempfile.mkdtemp(dir=directory))
    key, cert_der, cert_path = _make_key_and_cert(base)
    known_users = dict(users or {})
    refresh = dict(refresh_tokens or {})
    handle = TokenServer(realm="", service=service, issuer=issuer, cert_path=cert_path, lifetime=lifetime,
                         _dir=base, _owns_dir=True)
    lock = threading.Lock()

    def issue(subject: str, scopes: list[str], wanted_service: str) -> dict[str, object] | None:
        if wanted_service and wanted_service != service:
            return None
        allowed = {"pull", "push"} if subject else {"pull"}
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": issuer, "sub": subject, "aud": service, "exp": now + lifetime, "nbf": now - 1, "iat": now,
            "jti": secrets.token_hex(16), "access": _access(scopes, allowed),
        }
        token = _sign_jwt(key, cert_der, claims)
        with lock:
            handle.issued.append(Issued(subject=subject, scopes=tuple(scopes), token=token))
        return {"token": token, "access_token": token, "expires_in": lifetime,
                "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="hawser-test-token"')
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self) -> None:
            with lock:
                handle.refused += 1
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
                return
            query = parse_qs(url.query)
            subject = ""
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    self._refuse()
                    return
                if user not in known_users or known_users[user] != password:
                    self._refuse()
                    return
                subject = user
            elif not allow_anonymous:
                self._refuse()
                return
            body = issue(subject, query.get("scope", []), (query.get("service") or [""])[0])
            if body is None:
                self._answer(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
                return
            self._answer(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if urlsplit(self.path).path != "/token" or form.get("grant_type") != ["refresh_token"]:
                self._answer(400, {"error": "unsupported_grant_type"})
                return
            subject = refresh.get((form.get("refresh_token") or [""])[0], "")
            if not subject:
                self._refuse()
                return
            scopes = " ".join(form.get("scope", [])).split()
            body = issue(subject, scopes, (form.get("service") or [""])[0])
            if body is None:
                self._answer(400, {"error": "invalid_request"})
                return
            self._answer(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll interval keeps shutdown() (and so every test teardown) quick.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="hawser-token-server", daemon=True)
    thread.start()
    handle.realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    handle._server, handle._thread = server, thread
    return handle
