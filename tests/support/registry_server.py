"""Run Debian's docker-registry (distribution 2.8) on 127.0.0.1 for tests.

    with start_registry(tmp_path) as reg:                       # no auth
        ref = f"{reg.host}/test/image:latest"
    with start_registry(tmp_path, auth="htpasswd", users={"u": "p"}) as reg: ...
    with start_registry(tmp_path, auth="token", users={"u": "p"}, token_lifetime=2) as reg:
        reg.token_server.issued                                # tokens handed out
    with start_registry(tmp_path, tls=True, client_auth=True) as reg:
        reg.ca_path, reg.client_cert, reg.client_key            # https, a test CA

The registry listens on a free port with its storage in a fresh temporary
directory (deletes enabled), logs to ``<dir>/registry.log`` and is ready when
``start_registry`` returns.  ``stop()`` (or leaving the ``with``) terminates
it and removes the directory.  Readiness is probed with http.client, which
ignores HTTP_PROXY, so a proxy safety net in the environment does not matter.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.token_server import TokenServer, start_token_server

REGISTRY_BINARY = "/usr/bin/docker-registry"
Auth = Literal["htpasswd", "token"] | None


def registry_available() -> bool:
    """Whether docker-registry is installed (scripts/setup.sh installs it)."""
    return os.access(REGISTRY_BINARY, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryHandle:
    """A running registry: ``host`` is ``127.0.0.1:PORT``, ``url`` its http URL."""

    host: str
    url: str
    root: Path
    users: Mapping[str, str]
    auth: Auth
    process: subprocess.Popen[bytes] | None
    token_server: TokenServer | None = None
    # With tls=True: the CA that signed the registry's (and the client's) certificate.
    ca_path: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RegistryHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _config_yaml(root: Path, port: int, auth_block: str, tls_block: str = "") -> str:
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root / "storage"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
{tls_block}{auth_block}"""


@dataclass(frozen=True)
class _TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _make_tls_files(directory: Path) -> _TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hawser test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key

    files = _TLSFiles(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                      server_key=directory / "server.key", client_cert=directory / "client.pem",
                      client_key=directory / "client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_pem, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    files.server_cert.write_bytes(server_pem)
    _write_key(server_key, files.server_key)
    client_pem, client_key = leaf("hawser test client", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    files.client_cert.write_bytes(client_pem)
    _write_key(client_key, files.client_key)
    return files


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float, tls: _TLSFiles | None) -> bool:
    end = time.monotonic() + timeout
    context: ssl.SSLContext | None = None
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca))
        context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=1) if context is None
                else http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context))
        try:
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            if status in (200, 401):
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return False


def start_registry(directory: str | Path | None = None, *, auth: Auth = None,
                   users: Mapping[str, str] | None = None, token_lifetime: int = 300,
                   allow_anonymous_pull: bool = False, refresh_tokens: Mapping[str, str] | None = None,
                   tls: bool = False, client_auth: bool = False, startup_timeout: float = 15.0) -> RegistryHandle:
    """Start docker-registry on 127.0.0.1 with a random port; return when it answers.

    ``directory``: where to create the temporary directory (e.g. pytest's
    tmp_path); None uses the system temp dir.  ``auth``: None, "htpasswd"
    (Basic auth with ``users``) or "token" (a token server from
    tests.support.token_server, with ``users``, ``token_lifetime``,
    ``allow_anonymous_pull`` and ``refresh_tokens``).  ``tls``: serve https
    with a certificate from a fresh test CA (``handle.ca_path``);
    ``client_auth``: also require a client certificate signed by that CA
    (``handle.client_cert``/``client_key``).
    """
    if not registry_available():
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry)")
    users = dict(users or ({"hawser": "hawser-password"} if auth else {}))
    root = Path(tempfile.mkdtemp(prefix="hawser-registry-", dir=None if directory is None else str(directory)))
    token_server: TokenServer | None = None
    try:
        if auth == "htpasswd":
            lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in users.items()]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth_block = f"auth:\n  htpasswd:\n    realm: hawser-test\n    path: {root / 'htpasswd'}\n"
        elif auth == "token":
            token_server = start_token_server(root, users=users, lifetime=token_lifetime,
                                              allow_anonymous=allow_anonymous_pull, refresh_tokens=refresh_tokens)
            auth_block = (f"auth:\n  token:\n    realm: {token_server.realm}\n    service: {token_server.service}\n"
                          f"    issuer: {token_server.issuer}\n    rootcertbundle: {token_server.cert_path}\n")
        elif auth is None:
            auth_block = ""
        else:
            raise ValueError(f"unknown auth {auth!r}")
        tls_files = _make_tls_files(root) if tls or client_auth else None
        tls_block = ""
        if tls_files is not None:
            tls_block = (f"  tls:\n    certificate: {tls_files.server_cert}\n    key: {tls_files.server_key}\n")
            if client_auth:
                tls_block += f"    clientcas:\n      - {tls_files.ca}\n"
        last_log = ""
        for _ in range(3):  # another process may grab the free port first
            port = free_port()
            config = root / "config.yml"
            config.write_text(_config_yaml(root, port, auth_block, tls_block))
            with open(root / "registry.log", "ab") as log:
                env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
                proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
            if _wait_ready(proc, port, startup_timeout, tls_files):
                scheme = "https" if tls_files is not None else "http"
                return RegistryHandle(
                    host=f"127.0.0.1:{port}", url=f"{scheme}://127.0.0.1:{port}", root=root, users=users, auth=auth,
                    process=proc, token_server=token_server,
                    ca_path=None if tls_files is None else tls_files.ca,
                    client_cert=None if tls_files is None else tls_files.client_cert,
                    client_key=None if tls_files is None else tls_files.client_key)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            last_log = (root / "registry.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"docker-registry did not start:\n{last_log}")
    except BaseException:
        if token_server is not None:
            token_server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
