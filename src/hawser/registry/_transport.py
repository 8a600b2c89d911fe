"""The request engine under RegistryClient: TLS per host, authentication,
redirects, retries with backoff, timeouts, and turning failures into the
error kinds of hawser.errors.

Everything here is synchronous and shared by the threads of a pull: httpx
clients pool connections and are thread-safe; the auth cache has its own lock.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import functools
import json
import logging
import os
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

import httpx

from hawser._dataclass import dataclass
from hawser.errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    HawserError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)
from hawser.registry._auth import AuthCache, Token, parse_token_response
from hawser.registry._challenge import Challenge, parse_www_authenticate, pick_challenge
from hawser.registry._credentials import (
    Credentials,
    DockerConfig,
    docker_config_path,
    load_docker_config,
    normalize_host,
)
from hawser.registry._hosts import RegistryHost, TLSConfig, resolve_hosts, split_port
from hawser.registry._types import RegistryOptions

_log = logging.getLogger("hawser.registry")

MAX_REDIRECTS = 10
# The longest Retry-After waited for.  A server asking for more gets no retry:
# the request fails at once with the wait in its message (a pull blocked for
# an hour, or retried early against the server's wish, helps nobody).
MAX_RETRY_AFTER = 60.0
# Error bodies are read for their message only; a hostile one cannot grow memory.
MAX_ERROR_BODY = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REQUEST_CHALLENGE_PARAMS = frozenset({"scope", "error", "error_description", "error_uri"})

Content: TypeAlias = bytes | Callable[[], Iterable[bytes]] | None


class Operation:
    """One public call: what it is (for messages) and when it has to be over."""

    def __init__(self, what: str, clock: Callable[[], float], deadline: float | None) -> None:
        self.what = what
        self._clock = clock
        self.deadline = deadline
        self.deadline_at = None if deadline is None else clock() + deadline

    def remaining(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - self._clock()

    def expired(self) -> bool:
        rem = self.remaining()
        return rem is not None and rem <= 0

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.what}: not done within the {self.deadline:g}s deadline",
                                hint="raise the deadline or check the network to the registry")

    def check(self) -> None:
        if self.expired():
            raise self.exceeded()


class DripWatch:
    """Catches a body that trickles in: fewer than ``min_bytes`` over
    ``window`` seconds spent waiting for it.  The stall timeout alone cannot,
    as every byte restarts it.  Time the caller spends on the bytes (hashing,
    writing, unpacking) is not counted."""

    def __init__(self, clock: Callable[[], float], window: float, min_bytes: int) -> None:
        self._clock = clock
        self.window = window
        self.min_bytes = min_bytes
        self.waited = 0.0
        self.got = 0

    def now(self) -> float:
        return self._clock()

    def arrived(self, since: float, nbytes: int) -> bool:
        """Count ``nbytes`` that took from ``since`` until now to arrive; True
        when a whole window has passed with too few bytes."""
        if self.min_bytes <= 0:
            return False
        self.waited += self._clock() - since
        self.got += nbytes
        if self.waited < self.window:
            return False
        if self.got < self.min_bytes:
            return True
        self.waited, self.got = 0.0, 0
        return False


@dataclass(frozen=True, slots=True)
class _ClientKey:
    tls: TLSConfig
    proxy: str | None


def same_origin(url: httpx.URL, host: RegistryHost) -> bool:
    want = httpx.URL(f"{host.scheme}://{host.host}/")
    return (url.scheme, url.host, url.port) == (want.scheme, want.host, want.port)


def registry_error_detail(resp: httpx.Response) -> str:
    """The registry's error codes and messages (distribution spec error body), else a snippet."""
    buf = bytearray()
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > MAX_ERROR_BODY:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    finally:
        resp.close()
    text = bytes(buf[:MAX_ERROR_BODY])
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        parts = []
        for err in doc["errors"][:5]:
            if isinstance(err, dict):
                code, message = err.get("code"), err.get("message")
                parts.append(": ".join(str(x) for x in (code, message) if x))
        return "; ".join(p for p in parts if p)
    snippet = text.decode("utf-8", "replace").strip()
    snippet = "".join(c if c.isprintable() else " " for c in snippet)
    return snippet[:200]


def retry_after_seconds(resp: httpx.Response) -> float | None:
    """Seconds a 429/503 asks us to wait (Retry-After: seconds or HTTP-date);
    None without a usable header.  Not capped: see MAX_RETRY_AFTER."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


def _unavailable(host: RegistryHost, exc: httpx.TransportError, proxy: str | None, hosts_file: str) -> Unavailable:
    text = str(exc) or type(exc).__name__
    low = text.lower()
    name = host.host
    proxy_hint = (f"check HTTP_PROXY/HTTPS_PROXY, or add {split_port(name)[0]} to NO_PROXY"
                  if host.proxy is None else "check the proxy in hosts.toml")
    if isinstance(exc, httpx.ProxyError):
        return Unavailable(f"cannot reach registry {name} through the proxy {proxy or ''}: {text}",
                           hint=proxy_hint)
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return Unavailable(
            f"TLS certificate of registry {name} ({host}) is not trusted: {text}",
            hint=f"add its CA as ca = \"...\" in {hosts_file} (or skip_verify = true for a test registry)")
    if "wrong_version_number" in low or "wrong version number" in low or "record layer" in low:
        return Unavailable(f"TLS handshake with registry {name} ({host}) failed: {text}",
                           hint="the registry may speak plain http: use --plain-http for an http registry")
    if proxy is not None and isinstance(exc, httpx.ConnectError):
        # The connection that failed was the one to the proxy.
        return Unavailable(f"cannot reach registry {name} ({host}) through the proxy {proxy}: {text}",
                           hint=proxy_hint)
    if "alert bad certificate" in low or "certificate required" in low or "alert unknown ca" in low:
        return Unavailable(f"registry {name} ({host}) refused the TLS client certificate: {text}",
                           hint=f"set client = [[\"cert.pem\", \"key.pem\"]] for it in {hosts_file}")
    if "ssl" in low or "tls" in low:
        return Unavailable(f"TLS connection to registry {name} ({host}) failed: {text}")
    if "name or service not known" in low or "name resolution" in low or "nodename nor servname" in low \
            or "no address associated" in low:
        return Unavailable(f"cannot resolve registry host {name}: {text}",
                           hint="check the image reference's registry name and DNS")
    if "refused" in low:
        hint = "is the registry running?"
        if host.scheme == "https":
            hint += " use --plain-http for an http registry"
        return Unavailable(f"cannot connect to registry {name} ({host}): connection refused", hint=hint)
    return Unavailable(f"connection to registry {name} ({host}) failed: {text}",
                       hint="is the registry running and reachable?")


def retryable(exc: httpx.TransportError) -> bool:
    # Resets and drops mid-exchange are worth another try; refused connections,
    # DNS and TLS failures are not going to heal in a few seconds.  A TLS
    # alert can surface as a read error (TLS 1.3 checks client certificates
    # after the handshake), so SSL errors are excluded by their text.
    text = str(exc)
    if "[SSL" in text or "alert" in text.lower():
        return False
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError)):
        return True
    return isinstance(exc, httpx.ConnectError) and "reset" in str(exc).lower()


def status_error(resp: httpx.Response, *, host: RegistryHost, what: str, repository: str,
                 action: str = "pull") -> HawserError:
    """The error kind for a failed registry answer; reads (and closes) the body."""
    status = resp.status_code
    detail = registry_error_detail(resp)
    suffix = f" ({detail})" if detail else ""
    name = host.host
    if status in (401, 403):
        authed = "authorization" in resp.request.headers
        if not same_origin(resp.url, host):
            return PermissionDenied(f"{what}: storage at {resp.url.host} refused access ({status}){suffix}")
        if authed:
            hint = (f"check the credentials for {name} (or log in, if the token was anonymous) "
                    f"and that they allow {action} on {repository}")
        else:
            hint = f"log in (hawser login {name}) or check the repository name"
        return PermissionDenied(f"{what}: registry {name} denied {action} access to repository {repository}"
                                f" ({status}){suffix}", hint=hint)
    if status == 404:
        if repository in what:
            return NotFound(f"{what}: not found on registry {name}{suffix}")
        return NotFound(f"{what}: not found in repository {repository} on registry {name}{suffix}")
    if status == 405:
        return Unimplemented(f"{what}: registry {name} does not allow this operation (405){suffix}",
                             hint="the registry may be read-only or a pull-through cache")
    if status == 416:
        return DataLoss(f"{what}: registry {name} cannot serve the requested byte range (416){suffix}")
    if status == 429 or status >= 500:
        asked = retry_after_seconds(resp)
        wait = ""
        if asked is not None and asked > MAX_RETRY_AFTER:
            wait = f"; it asks to retry after {asked:.0f}s, longer than hawser waits ({MAX_RETRY_AFTER:g}s)"
        return Unavailable(f"{what}: registry {name} answered {status}{suffix}{wait}",
                           hint="the registry is overloaded or failing; try again later")
    if status == 400 and ("DIGEST_INVALID" in detail or "SIZE_INVALID" in detail):
        return DataLoss(f"{what}: registry {name} rejected the content: {detail}")
    if 400 <= status < 500:
        if "HTTP request to an HTTPS server" in detail:
            return InvalidArgument(f"{what}: registry {name} speaks https, not http{suffix}",
                                   hint="drop --plain-http")
        return InvalidArgument(f"{what}: registry {name} rejected the request ({status}){suffix}")
    return Unavailable(f"{what}: unexpected answer {status} from registry {name}{suffix}")


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle, or SSL_CERT_FILE or
    SSL_CERT_DIR), made once per process: loading the bundle takes some 30 ms,
    more than a whole pull of an image that is there already, and every
    client needs one, even for a plain-HTTP registry.  hawserd's pull worker
    makes it before it forks its pulls, which inherit it."""
    return httpx.create_ssl_context()


class Engine:
    """Sends distribution API requests for a RegistryClient."""

    def __init__(self, opts: RegistryOptions) -> None:
        self.opts = opts
        self.config_dir = Path(opts.config_dir) if opts.config_dir is not None else None
        self.auth = AuthCache(opts.clock)
        self._clients: dict[_ClientKey, httpx.Client] = {}
        self._docker_config_cache: tuple[tuple[int, int, int], DockerConfig] | None = None
        self._lock = threading.Lock()
        self._closed = False

    # --- hosts, clients, credentials ------------------------------------

    def hosts(self, namespace: str, capability: str) -> list[RegistryHost]:
        """The hosts for ``namespace`` able to ``capability``, in the order to try them."""
        every = resolve_hosts(self.config_dir, namespace, plain_http=self.opts.plain_http)
        able = [h for h in every if h.can(capability)]
        if not able:
            raise FailedPrecondition(
                f"no registry host for {namespace} is allowed to {capability}",
                hint=f"add {capability!r} to the capabilities of a host in "
                     f"{self.config_dir}/{namespace}/hosts.toml")
        return able

    def client(self, host: RegistryHost) -> httpx.Client:
        key = _ClientKey(tls=host.tls, proxy=host.proxy)
        with self._lock:
            if self._closed:
                raise FailedPrecondition("the registry client is closed")
            client = self._clients.get(key)
            if client is None:
                client = httpx.Client(
                    verify=self._ssl_context(host.tls),
                    proxy=host.proxy,
                    # HTTP(S)_PROXY and NO_PROXY, as users expect of any client.
                    trust_env=True,
                    # Redirects are followed by hand: see _send_redirecting.
                    follow_redirects=False,
                    headers={"User-Agent": self.opts.user_agent},
                    transport=self.opts.transport,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                )
                self._clients[key] = client
            return client

    @staticmethod
    def _ssl_context(tls: TLSConfig) -> ssl.SSLContext | bool:
        if tls == TLSConfig():
            return default_ssl_context()
        ctx = httpx.create_ssl_context()
        try:
            for ca in tls.ca_files:
                ctx.load_verify_locations(cafile=os.fspath(ca))
            for cert, key in tls.client_certs:
                ctx.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"cannot load TLS certificates from the registry hosts config: {exc}",
                                  hint="check the ca and client paths in hosts.toml") from None
        if tls.skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def credentials(self, host: str) -> Credentials | None:
        """The injected callback's answer first, then docker's config.json."""
        name = normalize_host(host)
        if self.opts.credentials is not None:
            creds = self.opts.credentials(name)
            if creds is not None:
                return creds
        if self.opts.docker_config is None:
            return None
        return self._docker_config().lookup(name, helper_timeout=self.opts.credential_helper_timeout)

    def _docker_config(self) -> DockerConfig:
        """The docker config, parsed again only when the file changed (a login
        while a daemon runs must be seen, a re-read per request is waste)."""
        assert self.opts.docker_config is not None
        path = docker_config_path(self.opts.docker_config)  # the default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            cached = self._docker_config_cache
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        config = load_docker_config(path)
        with self._lock:
            self._docker_config_cache = (stamp, config) if stamp is not None else None
        return config

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # --- operations and timing ------------------------------------------

    def operation(self, what: str) -> Operation:
        return Operation(what, self.opts.clock, self.opts.deadline)

    def _timeout(self, host: RegistryHost, op: Operation) -> httpx.Timeout:
        stall = self.opts.stall_timeout
        connect = host.dial_timeout if host.dial_timeout is not None else self.opts.connect_timeout
        rem = op.remaining()
        if rem is not None:
            rem = max(rem, 0.001)
            stall, connect = min(stall, rem), min(connect, rem)
        return httpx.Timeout(connect=connect, read=stall, write=stall, pool=stall)

    def backoff(self, attempt: int) -> float:
        return float(min(self.opts.backoff_max, self.opts.backoff_base * (2 ** attempt)))

    def pause(self, op: Operation, delay: float) -> None:
        rem = op.remaining()
        if rem is not None and delay >= rem:
            raise op.exceeded()
        if delay > 0:
            self.opts.sleep(delay)

    def timeout_error(self, host: RegistryHost, op: Operation, exc: httpx.TimeoutException) -> HawserError:
        if op.expired():
            return op.exceeded()
        if isinstance(exc, httpx.ConnectTimeout):
            return Unavailable(f"{op.what}: timed out connecting to registry {host.host} ({host})",
                               hint="is the registry running and reachable?")
        return DeadlineExceeded(
            f"{op.what}: registry {host.host} sent nothing for {self.opts.stall_timeout:g}s (stall timeout)",
            hint="the registry or the network stalled; try again or raise the stall timeout")

    def drip_watch(self) -> DripWatch:
        return DripWatch(self.opts.clock, self.opts.stall_timeout, self.opts.stall_bytes)

    def drip_error(self, host: RegistryHost, op: Operation, watch: DripWatch) -> HawserError:
        if op.expired():
            return op.exceeded()
        return DeadlineExceeded(
            f"{op.what}: registry {host.host} sent only {watch.got} bytes in {watch.waited:.1f}s "
            f"(stall timeout: fewer than {watch.min_bytes} bytes in {watch.window:g}s)",
            hint="the registry or the network stalled; try again or raise the stall timeout")

    def transport_error(self, host: RegistryHost, exc: httpx.TransportError) -> Unavailable:
        base = str(self.config_dir) if self.config_dir is not None else "<registry config dir>"
        hosts_file = f"{base}/{normalize_host(host.namespace or host.host)}/hosts.toml"
        return _unavailable(host, exc, self.proxy_for(host), hosts_file)

    def proxy_for(self, host: RegistryHost) -> str | None:
        """The proxy requests to ``host`` go through, if any (for error messages)."""
        if host.proxy is not None:
            return host.proxy
        if self.opts.transport is not None:
            return None  # httpx ignores proxy variables when a transport is injected
        # The same variables httpx reads (trust_env=True), including NO_PROXY.
        proxies = urllib.request.getproxies_environment()
        if urllib.request.proxy_bypass(host.host):  # on Linux: NO_PROXY from the environment
            return None
        return proxies.get(host.scheme) or proxies.get("all")

    # --- sending --------------------------------------------------------

    def with_retries(self, host: RegistryHost, op: Operation, once: Callable[[], httpx.Response], *,
                     retries: int | None = None) -> httpx.Response:
        """Run ``once`` until it gives an answer that is not a 5xx/429, or tries run out.

        Drops and resets are retried with exponential backoff; a stall raises
        DeadlineExceeded; what cannot heal (refused, DNS, TLS) raises Unavailable
        at once.  A Retry-After is honoured (at least the backoff) up to
        MAX_RETRY_AFTER; an answer asking for longer is not retried.  The last
        5xx/429 answer is returned for the caller to map.
        """
        budget = self.opts.max_retries if retries is None else retries
        attempt = 0
        while True:
            op.check()
            try:
                resp = once()
            except httpx.TimeoutException as exc:
                raise self.timeout_error(host, op, exc) from None
            except httpx.TransportError as exc:
                if attempt < budget and retryable(exc):
                    delay = self.backoff(attempt)
                    attempt += 1
                    _log.info("%s: %s: %s; retry %d/%d in %.1fs", op.what, host, exc, attempt, budget, delay)
                    self.pause(op, delay)
                    continue
                raise self.transport_error(host, exc) from None
            if (resp.status_code == 429 or resp.status_code >= 500) and attempt < budget:
                delay = self.backoff(attempt)
                asked = retry_after_seconds(resp)
                if asked is not None and asked > MAX_RETRY_AFTER:
                    _log.info("%s: %s answered %d, retry after %.0fs: too long to wait", op.what, host,
                              resp.status_code, asked)
                    return resp
                if asked is not None:
                    delay = max(delay, asked)
                resp.close()
                attempt += 1
                _log.info("%s: %s answered %d; retry %d/%d in %.1fs", op.what, host, resp.status_code,
                          attempt, budget, delay)
                self.pause(op, delay)
                continue
            return resp

    def request(self, host: RegistryHost, op: Operation, method: str, url: httpx.URL | str, *, scope: str,
                headers: Mapping[str, str] | None = None, content: Content = None, stream: bool = False,
                retries: int | None = None) -> httpx.Response:
        """One authenticated request with redirects and retries; the caller maps the status.

        Raises Unavailable, DeadlineExceeded, PermissionDenied (from the token
        server) and InvalidArgument (bad TLS files).
        """
        return self.with_retries(
            host, op, lambda: self._authenticated(host, op, method, url, scope, headers, content, stream),
            retries=retries)

    def _authenticated(self, host: RegistryHost, op: Operation, method: str, url: httpx.URL | str, scope: str,
                       headers: Mapping[str, str] | None, content: Content, stream: bool) -> httpx.Response:
        auth = self.auth_header(host, op, scope)
        resp = self._send_redirecting(host, op, method, url, headers, auth, content, stream)
        if resp.status_code != 401 or not same_origin(resp.url, host):
            return resp
        challenge = pick_challenge(parse_www_authenticate(resp.headers.get_list("www-authenticate")))
        if challenge is None:
            return resp
        # The challenge's own scope (and RFC 6750's error, e.g. "invalid_token"
        # for an expired token) belong to this request only; what is remembered
        # for the host is its scheme, realm and service.  A changed challenge
        # drops every token of the host, so an error must not count as a change.
        extra_scope = challenge.get("scope")
        self.auth.learn(host.host, Challenge(challenge.scheme, {
            k: v for k, v in challenge.params.items() if k not in _REQUEST_CHALLENGE_PARAMS}))
        rejected = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if rejected is not None:
            self.auth.invalidate(host.host, scope, rejected)
        fresh = self.auth_header(host, op, scope, rejected=rejected, extra_scope=extra_scope)
        if fresh is None or fresh == auth:
            return resp  # nothing new to offer: the caller reports the 401
        resp.close()
        return self._send_redirecting(host, op, method, url, headers, fresh, content, stream)

    def auth_header(self, host: RegistryHost, op: Operation, scope: str, *,
                    rejected: str | None = None, extra_scope: str = "") -> str | None:
        """The Authorization value for ``host`` (fetching a token if needed), or None
        while the host has not asked for authentication."""
        challenge = self.auth.challenge(host.host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials(host.host)
            if creds is None or not creds.has_basic:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        tok = self.auth.token(host.host, scope)
        if tok is not None and tok.value != rejected:
            return f"Bearer {tok.value}"
        with self.auth.fetch_lock(host.host, scope):
            # Another thread may have fetched one while this one waited.
            tok = self.auth.token(host.host, scope)
            if tok is None or tok.value == rejected:
                creds = self.credentials(host.host)
                tok = self._fetch_token(host, op, challenge, scope, creds, extra_scope)
                self.auth.store(host.host, scope, tok)
        return f"Bearer {tok.value}"

    def _fetch_token(self, host: RegistryHost, op: Operation, challenge: Challenge, scope: str,
                     creds: Credentials | None, extra_scope: str) -> Token:
        realm = challenge.get("realm")
        unusable = PermissionDenied(f"registry {host.host} asked for a token from an unusable realm {realm!r}")
        try:
            parts = urlsplit(realm)
            httpx.URL(realm)  # the request is built from it: httpx refuses more (NUL, non-printables)
        except (ValueError, httpx.InvalidURL):  # e.g. an unbalanced "[" of an IPv6 literal
            raise unusable from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise unusable
        # A scope may be several, space-separated (a mount's: push here, pull at the source);
        # none for a login's GET /v2/.
        scopes = scope.split()
        # Ask for what the registry said it wants too (a cross-repository
        # mount, say), beside the scope this client computed.
        for extra in extra_scope.split():
            if extra not in scopes:
                scopes.append(extra)
        service = challenge.get("service")
        client = self.client(host)
        timeout = self._timeout(host, op)

        def once() -> httpx.Response:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh-token grant (docker's token spec, oauth.md).
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "hawser", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                req = client.build_request("POST", realm, data=form, timeout=timeout)
            else:
                params: list[tuple[str, str | int | float | bool | None]] = [("scope", s) for s in scopes]
                if service:
                    params.append(("service", service))
                headers: dict[str, str] = {}
                if creds is not None and creds.username:
                    params.append(("account", creds.username))
                    raw = f"{creds.username}:{creds.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
                req = client.build_request("GET", realm, params=params, headers=headers, timeout=timeout)
            return client.send(req)

        token_host = RegistryHost(scheme=parts.scheme, host=parts.netloc, path="")
        resp = self.with_retries(token_host, op, once)
        if resp.status_code in (401, 403):
            detail = registry_error_detail(resp)
            who = f"user {creds.username!r}" if creds is not None and creds.username else "anonymous access"
            hint = (f"check the credentials for {normalize_host(host.host)}" if creds is not None
                    else f"log in: hawser login {normalize_host(host.host)}")
            raise PermissionDenied(
                f"token server {parts.netloc} refused {who}{f' for {scope}' if scope else ''} on registry {host.host}"
                + (f" ({detail})" if detail else ""), hint=hint)
        if resp.status_code != 200:
            detail = registry_error_detail(resp)
            raise Unavailable(f"token server {parts.netloc} answered {resp.status_code} for registry {host.host}"
                              + (f" ({detail})" if detail else ""))
        return parse_token_response(resp.content, now=self.opts.clock(), where=parts.netloc)

    def _send_redirecting(self, host: RegistryHost, op: Operation, method: str, url: httpx.URL | str,
                          headers: Mapping[str, str] | None, auth: str | None, content: Content,
                          stream: bool) -> httpx.Response:
        client = self.client(host)
        current = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = httpx.Headers()
            # Registry headers and credentials go to the registry only, never to
            # the blob storage a redirect points at.
            if same_origin(current, host):
                for name, value in host.headers:
                    hdrs[name] = value
                if auth:
                    hdrs["Authorization"] = auth
            if headers:
                hdrs.update(headers)
            body = content() if callable(content) else content
            req = client.build_request(method, current, headers=hdrs, content=body,
                                       timeout=self._timeout(host, op))
            resp = client.send(req, stream=True)
            location = resp.headers.get("location")
            if resp.status_code in _REDIRECTS and method in ("GET", "HEAD") and location:
                resp.close()
                try:
                    current = resp.url.join(location)
                except httpx.InvalidURL:
                    raise Unavailable(f"{op.what}: registry {host.host} redirected to a bad URL {location!r}") from None
                if current.scheme not in ("http", "https"):
                    raise Unavailable(f"{op.what}: registry {host.host} redirected to a non-http URL {current}")
                continue
            if not stream:
                try:
                    resp.read()
                finally:
                    resp.close()
            return resp
        raise Unavailable(f"{op.what}: registry {host.host} redirected more than {MAX_REDIRECTS} times")
