"""RegistryClient: the distribution API v2 operations hawser uses.

Hosts are tried in the order hosts.toml gives (mirrors, then the server); a
host that cannot be reached, fails with 5xx, lacks the object (404) or serves
bytes that do not match their digest is skipped for the next one.  The last
host's error is the one raised, with the skipped hosts named in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import httpx

from hawser.errors import (
    DataLoss,
    DeadlineExceeded,
    HawserError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from hawser.oci import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Descriptor, Digest, Reference, media, sniff_media_type
from hawser.registry._auth import scope_for
from hawser.registry._hosts import CAP_PULL, CAP_PUSH, CAP_RESOLVE, RegistryHost
from hawser.registry._transport import Engine, Operation, retryable, status_error
from hawser.registry._types import RegistryOptions, Resolved
from hawser.registry._upload import BlobData, BlobPushed, BlobSource, Uploader, UploadOptions, UploadProgress

_T = TypeVar("_T")
_log = logging.getLogger("hawser.registry")

# Hosts in a fallback list other than the last get this many retries each: a
# failing mirror should cost little before the server is asked.
_MIRROR_RETRIES = 0


def _manifest_url(host: RegistryHost, ref: Reference, obj: str) -> httpx.URL:
    return _url(host, f"{ref.path}/manifests/{obj}")


def _blob_url(host: RegistryHost, ref: Reference, digest: str) -> httpx.URL:
    return _url(host, f"{ref.path}/blobs/{digest}")


def _url(host: RegistryHost, rest: str) -> httpx.URL:
    url = httpx.URL(f"{host.base_url}/{rest}")
    if host.namespace:
        # containerd tells a mirror which registry it stands in for.
        url = url.copy_add_param("ns", host.namespace)
    return url


def _with_context(exc: HawserError, skipped: list[str]) -> HawserError:
    if not skipped:
        return exc
    again = type(exc)(f"{exc.message} (also tried: {'; '.join(skipped)})", hint=exc.hint)
    return again


def _check_manifest_type(media_type: str, what: str) -> None:
    if media_type in media.SCHEMA1:
        raise Unimplemented(
            f"{what}: Docker image manifest schema 1 is deprecated and not supported",
            hint="push the image again with a current Docker or buildkit (schema 2 or OCI)")
    if media_type not in media.MANIFESTS | media.INDEXES:
        raise InvalidArgument(f"{what}: media type {media_type!r} is not an image manifest or index")


def _sniff(data: bytes, declared: str, what: str) -> str:
    try:
        return sniff_media_type(data, declared)
    except InvalidArgument as exc:
        # Say where the bytes came from: "not valid JSON" alone helps nobody.
        raise InvalidArgument(f"{what}: {exc.message}", hint=exc.hint) from None


def _verify(data: bytes, digest: Digest, what: str) -> None:
    got = Digest.of(data, digest.algorithm)
    if got != digest:
        raise DataLoss(f"{what}: content digest is {got}, expected {digest}",
                       hint="the registry or something between it and hawser corrupted the content")


class RegistryClient:
    """Resolves, fetches and pushes images over the distribution API v2.

    Safe to share between threads.  Close it (or use it as a context manager)
    to release pooled connections.
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        """Nothing is read or connected until the first request."""
        self.options = options or RegistryOptions()
        self._engine = Engine(self.options)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection.  Idempotent."""
        self._engine.close()

    # --- host fallback ----------------------------------------------------

    def _over_hosts(self, hosts: list[RegistryHost], op: Operation,
                    attempt: Callable[[RegistryHost, int | None], _T]) -> _T:
        skipped: list[str] = []
        for i, host in enumerate(hosts):
            last = i == len(hosts) - 1
            try:
                return attempt(host, None if last else _MIRROR_RETRIES)
            except (NotFound, Unavailable, DataLoss, DeadlineExceeded) as exc:
                if last or op.expired():
                    raise _with_context(exc, skipped) from None
                _log.info("%s: skipping %s: %s", op.what, host, exc)
                skipped.append(f"{host}: {exc.message}")
        raise AssertionError("unreachable: hosts() never returns an empty list")

    # --- manifests ----------------------------------------------------------

    def resolve(self, ref: Reference) -> Resolved:
        """Fetch the root manifest or index ``ref`` names and verify it.

        A tag is resolved by hosts with the "resolve" capability; a digest by
        any "pull" host, as the bytes are checked against the digest.

        Raises NotFound (no such tag or manifest), PermissionDenied,
        Unavailable, DeadlineExceeded, DataLoss (digest mismatch),
        ResourceExhausted (over MAX_MANIFEST_BYTES), Unimplemented (schema 1),
        InvalidArgument (not a manifest or index).
        """
        op = self._engine.operation(f"resolving {ref}")
        hosts = self._engine.hosts(ref.domain, CAP_PULL if ref.digest else CAP_RESOLVE)

        def attempt(host: RegistryHost, retries: int | None) -> Resolved:
            data, declared, header_digest = self._get_manifest(host, op, ref, ref.object, (), retries)
            what = f"manifest {ref} from {host.host}"
            if ref.digest is not None:
                _verify(data, ref.digest, what)
                digest = ref.digest
            else:
                digest = Digest.of(data)
                if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                    raise DataLoss(f"{what}: content digest is {digest}, the registry says {header_digest}")
            media_type = _sniff(data, declared, what)
            _check_manifest_type(media_type, what)
            return Resolved(descriptor=Descriptor(media_type=media_type, digest=digest, size=len(data)), data=data)

        return self._over_hosts(hosts, op, attempt)

    def fetch_manifest(self, ref: Reference, desc: Descriptor) -> bytes:
        """The manifest or index ``desc`` points at (by digest), verified.

        Raises NotFound, PermissionDenied, Unavailable, DeadlineExceeded,
        DataLoss (size or digest mismatch), ResourceExhausted (over
        MAX_MANIFEST_BYTES), Unimplemented (schema 1), InvalidArgument.
        """
        what = f"manifest {desc.digest} of {ref.name}"
        _check_manifest_type(desc.media_type, what)
        if desc.size > MAX_MANIFEST_BYTES:
            raise ResourceExhausted(f"{what} is {desc.size} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
        op = self._engine.operation(f"fetching {what}")
        hosts = self._engine.hosts(ref.domain, CAP_PULL)

        def attempt(host: RegistryHost, retries: int | None) -> bytes:
            data, declared, _ = self._get_manifest(host, op, ref, str(desc.digest), (desc.media_type,), retries)
            where = f"{what} from {host.host}"
            if len(data) != desc.size:
                raise DataLoss(f"{where}: {len(data)} bytes, the descriptor says {desc.size}")
            _verify(data, desc.digest, where)
            _check_manifest_type(_sniff(data, declared or desc.media_type, where), where)
            return data

        return self._over_hosts(hosts, op, attempt)

    def _get_manifest(self, host: RegistryHost, op: Operation, ref: Reference, obj: str,
                      preferred: tuple[str, ...], retries: int | None) -> tuple[bytes, str, str]:
        accept = list(preferred) + [t for t in media.MANIFEST_ACCEPT if t not in preferred]
        headers = {"Accept": ", ".join(accept)}
        what = f"manifest {ref.name}@{obj}" if ":" in obj else f"manifest {ref.name}:{obj}"
        budget = self.options.max_retries if retries is None else retries
        tries = 0
        while True:
            resp = self._engine.request(host, op, "GET", _manifest_url(host, ref, obj), scope=scope_for(ref.path),
                                        headers=headers, stream=True, retries=retries)
            if resp.status_code != 200:
                raise status_error(resp, host=host, what=what, repository=ref.path)
            try:
                data = self._read_limited(resp, host, op, what, MAX_MANIFEST_BYTES)
                break
            except httpx.TransportError as exc:
                # The body broke off (a reset, fewer bytes than its Content-Length):
                # ask again, as for a dropped blob.
                if tries >= budget or not retryable(exc):
                    raise self._engine.transport_error(host, exc) from None
                delay = self._engine.backoff(tries)
                tries += 1
                _log.info("%s from %s: %s; retry %d/%d in %.1fs", what, host, exc, tries, budget, delay)
                self._engine.pause(op, delay)
            finally:
                resp.close()
        declared = resp.headers.get("content-type", "").split(";")[0].strip()
        return data, declared, resp.headers.get("docker-content-digest", "")

    def _read_limited(self, resp: httpx.Response, host: RegistryHost, op: Operation, what: str,
                      limit: int) -> bytes:
        """The body, at most ``limit`` bytes.  A dropped connection is left to
        the caller (httpx.TransportError)."""
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise ResourceExhausted(f"{what} from {host.host} is {length} bytes, over the {limit} byte limit")
        buf = bytearray()
        watch = self._engine.drip_watch()
        chunks = resp.iter_bytes()
        try:
            while True:
                since = watch.now()
                chunk = next(chunks, None)
                if chunk is None:
                    break
                buf += chunk
                # Stop at limit+1: enough to know it is too big, no more.
                if len(buf) > limit:
                    raise ResourceExhausted(f"{what} from {host.host} is over the {limit} byte limit")
                op.check()
                if watch.arrived(since, len(chunk)):
                    raise self._engine.drip_error(host, op, watch)
        except httpx.TimeoutException as exc:
            raise self._engine.timeout_error(host, op, exc) from None
        except httpx.DecodingError as exc:
            raise DataLoss(f"{what} from {host.host}: cannot decode its Content-Encoding: {exc}") from None
        return bytes(buf)

    # --- blobs --------------------------------------------------------------

    def fetch_blob(self, ref: Reference, desc: Descriptor, *, offset: int = 0) -> BlobStream:
        """Open a stream of the blob's bytes from ``offset`` on.

        The stream resumes by itself (Range requests) after dropped
        connections and short reads; use it as a context manager so its
        connection is released.  It does not hash: the caller verifies the
        digest.  It does refuse more bytes than ``desc.size`` (DataLoss).

        Raises (here or while iterating) NotFound, PermissionDenied,
        Unavailable, DeadlineExceeded (stall or deadline), DataLoss,
        InvalidArgument (offset beyond the blob).
        """
        if offset < 0 or offset > desc.size:
            raise InvalidArgument(f"offset {offset} is outside blob {desc.digest} of {desc.size} bytes")
        op = self._engine.operation(f"fetching blob {desc.digest} of {ref.name}")
        stream = BlobStream(self._engine, op, ref, desc, offset)
        if offset < desc.size:
            hosts = self._engine.hosts(ref.domain, CAP_PULL)
            self._over_hosts(hosts, op, stream._open)
        return stream

    def fetch_blob_bytes(self, ref: Reference, desc: Descriptor, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
        """A small blob (an image config) in memory, size and digest verified.

        Raises ResourceExhausted when ``desc.size`` exceeds ``limit``, DataLoss
        on a size or digest mismatch, and what fetch_blob raises.
        """
        if desc.size > limit:
            raise ResourceExhausted(f"blob {desc.digest} is {desc.size} bytes, over the {limit} byte limit")
        with self.fetch_blob(ref, desc) as stream:
            data = b"".join(stream)
        what = f"blob {desc.digest} of {ref.name}"
        if len(data) != desc.size:
            raise DataLoss(f"{what}: got {len(data)} bytes, the descriptor says {desc.size}")
        _verify(data, desc.digest, what)
        return data

    def blob_exists(self, ref: Reference, digest: Digest) -> bool:
        """Whether the repository has the blob (HEAD), asked of the first push host.

        Raises PermissionDenied, Unavailable, DeadlineExceeded.
        """
        op = self._engine.operation(f"checking blob {digest} in {ref.name}")
        host = self._engine.hosts(ref.domain, CAP_PUSH)[0]
        return self._blob_exists(host, op, ref, digest, scope_for(ref.path, push=True))

    def _blob_exists(self, host: RegistryHost, op: Operation, ref: Reference, digest: str, scope: str) -> bool:
        resp = self._engine.request(host, op, "HEAD", _blob_url(host, ref, digest), scope=scope)
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise status_error(resp, host=host, what=f"checking blob {digest}", repository=ref.path, action="push")

    # --- push ---------------------------------------------------------------

    def push_blob(self, ref: Reference, data: BlobData, desc: Descriptor, *, mount_from: Sequence[str] = (),
                  progress: UploadProgress | None = None, options: UploadOptions | None = None) -> BlobPushed:
        """Upload a blob (bytes, a file's path, or a function opening its bytes)
        unless the repository has it; see ``registry._upload`` for how.

        ``mount_from`` names repositories of the same registry that may hold
        the blob: it is mounted from the first that does.  ``progress`` hears
        the offset as bytes go out.  Idempotent.  Raises InvalidArgument (data
        does not match ``desc``), DataLoss (the registry saw other bytes),
        PermissionDenied, NotFound, Unavailable (also after the retries of a
        broken upload ran out), DeadlineExceeded, Unimplemented (read-only
        registry).
        """
        source = BlobSource(data, desc)
        op = self._engine.operation(f"pushing blob {desc.digest} to {ref.name}")
        hosts = self._engine.hosts(ref.domain, CAP_PUSH)
        scope = scope_for(ref.path, push=True)

        def attempt(host: RegistryHost, retries: int | None) -> BlobPushed:
            uploader = Uploader(self._engine, host, op, ref, source, uploads_url=_url(host, f"{ref.path}/blobs/uploads/"),
                                blob_url=_blob_url(host, ref, str(desc.digest)), scope=scope,
                                options=options or UploadOptions(), progress=progress, retries=retries)
            return uploader.run(mount_from)

        return self._over_hosts(hosts, op, attempt)

    def manifest_exists(self, ref: Reference, obj: str) -> Descriptor | None:
        """The descriptor of the manifest ``obj`` (a tag or digest) names in the
        repository (HEAD), or None when it has none; asked of the first push host.

        Raises PermissionDenied, Unavailable, DeadlineExceeded.
        """
        op = self._engine.operation(f"checking manifest {ref.name}:{obj}")
        host = self._engine.hosts(ref.domain, CAP_PUSH)[0]
        resp = self._engine.request(host, op, "HEAD", _manifest_url(host, ref, obj),
                                    scope=scope_for(ref.path, push=True),
                                    headers={"Accept": ", ".join(media.MANIFEST_ACCEPT)})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise status_error(resp, host=host, what=f"checking manifest {obj}", repository=ref.path, action="push")
        said = resp.headers.get("docker-content-digest", "")
        length = resp.headers.get("content-length", "")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        try:
            digest = Digest(said)
        except InvalidArgument:
            return None  # nothing to compare with: the caller pushes
        return Descriptor(media_type=media_type or media.OCI_MANIFEST, digest=digest,
                          size=int(length) if length.isdigit() else 0)

    def push_manifest(self, ref: Reference, data: bytes, media_type: str, *, tag: str | None = None) -> Descriptor:
        """PUT a manifest or index under ``tag`` (or under its digest when tag is None).

        Returns its descriptor.  Raises InvalidArgument (media type, or
        rejected by the registry, e.g. MANIFEST_BLOB_UNKNOWN), DataLoss,
        PermissionDenied, Unavailable, DeadlineExceeded, Unimplemented.
        """
        _check_manifest_type(media_type, f"pushing manifest to {ref.name}")
        if len(data) > MAX_MANIFEST_BYTES:
            raise ResourceExhausted(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
        digest = Digest.of(data)
        desc = Descriptor(media_type=media_type, digest=digest, size=len(data))
        obj = tag or str(digest)
        op = self._engine.operation(f"pushing manifest {ref.name}:{obj}")
        hosts = self._engine.hosts(ref.domain, CAP_PUSH)

        def attempt(host: RegistryHost, retries: int | None) -> Descriptor:
            resp = self._engine.request(host, op, "PUT", _manifest_url(host, ref, obj),
                                        scope=scope_for(ref.path, push=True), content=data,
                                        headers={"Content-Type": media_type}, retries=retries)
            if resp.status_code not in (200, 201, 204):
                raise status_error(resp, host=host, what=f"pushing manifest {obj}", repository=ref.path,
                                   action="push")
            said = resp.headers.get("docker-content-digest")
            if said and said != str(digest):
                raise DataLoss(f"registry {host.host} stored manifest {obj} as {said}, expected {digest}")
            return desc

        return self._over_hosts(hosts, op, attempt)


class BlobStream:
    """An iterator of a blob's bytes in chunks, from an offset to the end.

    It resumes after dropped connections and short reads with
    ``Range: bytes=N-`` requests to the host that served it, backing off
    between tries that made no progress.  ``position`` is the offset of the
    next byte; ``resumes`` counts the resumptions.  Not for use by several
    threads at once.
    """

    def __init__(self, engine: Engine, op: Operation, ref: Reference, desc: Descriptor, offset: int) -> None:
        self._engine = engine
        self._op = op
        self._ref = ref
        self._desc = desc
        self.position = offset
        self.resumes = 0
        self._host: RegistryHost | None = None
        self._resp: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._skip = 0
        self._carry = b""
        self._failures = 0
        self._closed = False
        self._watch = engine.drip_watch()
        # A stall found after some bytes arrived: raised once those are handed out.
        self._pending: HawserError | None = None
        self._what = f"blob {desc.digest} of {ref.name}"

    @property
    def descriptor(self) -> Descriptor:
        return self._desc

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def close(self) -> None:
        """Release the connection.  Idempotent."""
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        # Carried bytes are not counted in position yet: a resume fetches them again.
        self._carry = b""
        resp, self._resp, self._chunks = self._resp, None, None
        if resp is not None:
            resp.close()

    def _open(self, host: RegistryHost, retries: int | None) -> None:
        """GET the blob from ``position`` on; sets up the chunk iterator."""
        headers = {"Accept-Encoding": "identity"}
        if self.position:
            headers["Range"] = f"bytes={self.position}-"
        resp = self._engine.request(host, self._op, "GET", _blob_url(host, self._ref, str(self._desc.digest)),
                                    scope=scope_for(self._ref.path), headers=headers, stream=True, retries=retries)
        try:
            self._skip = self._check_answer(resp, host)
        except BaseException:
            resp.close()
            raise
        self._host = host
        self._resp = resp
        self._chunks = _raw_chunks(resp)
        self._watch = self._engine.drip_watch()

    def _check_answer(self, resp: httpx.Response, host: RegistryHost) -> int:
        """Bytes to discard before ``position`` is reached (a server that ignored Range)."""
        size = self._desc.size
        what = f"{self._what} from {host.host}"
        hint = ("the registry's copy does not match the image manifest, or something between hawser and the "
                "registry changed the answer; try the pull again")
        if resp.status_code == 200:
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) != size:
                raise DataLoss(f"{what}: registry has {length} bytes (its Content-Length), the descriptor says {size}",
                               hint=hint)
            return self.position
        if resp.status_code == 206:
            start, total = _content_range(resp.headers.get("content-range", ""))
            if total is not None and total != size:
                raise DataLoss(f"{what}: registry has {total} bytes (its Content-Range), the descriptor says {size}",
                               hint=hint)
            if start is None or start > self.position:
                raise Unavailable(f"{what}: registry answered a range request with bad Content-Range "
                                  f"{resp.headers.get('content-range')!r}")
            return self.position - start
        if resp.status_code == 416:
            raise DataLoss(f"{what}: registry cannot serve from byte {self.position} of {size}",
                           hint="the registry's copy is shorter than the descriptor says")
        raise status_error(resp, host=host, what=self._what, repository=self._ref.path)

    def __next__(self) -> bytes:
        size = self._desc.size
        while True:
            if self._pending is not None:
                err, self._pending = self._pending, None
                self.close()
                raise err
            if self._closed:
                raise StopIteration
            if self.position >= size:
                self.close()
                raise StopIteration
            self._op.check()
            if self._chunks is None:
                self._resume()
                continue
            chunk, ended, error = self._gather(size)
            if chunk:
                self.position += len(chunk)
                self._failures = 0
                if ended or error is not None:
                    # Hand out what arrived; the next call resumes (or finishes).
                    self._drop()
                    if error is not None:
                        _log_drop(self, str(error) or type(error).__name__)
                return chunk
            if error is None:
                _log_drop(self, "body ended early")
            else:
                _log_drop(self, str(error) or type(error).__name__)
            self._drop()

    def _gather(self, size: int) -> tuple[bytes, bool, httpx.TransportError | None]:
        """Up to chunk_size bytes from the connection: (bytes, body ended, drop error).

        Pieces are collected until a chunk is full, so that a drop loses
        nothing already received.  Raises DataLoss past ``size``,
        DeadlineExceeded on a stall (silence for stall_timeout, or a slow
        drip) or the deadline.
        """
        assert self._chunks is not None
        limit = self._engine.opts.chunk_size
        buf = bytearray()
        try:
            while len(buf) < limit:
                if self._carry:
                    piece, self._carry = self._carry, b""
                else:
                    since = self._watch.now()
                    piece = next(self._chunks)
                    if self._watch.arrived(since, len(piece)):
                        assert self._host is not None
                        return self._stalled(buf, self._engine.drip_error(self._host, self._op, self._watch))
                if self._skip:
                    cut = min(self._skip, len(piece))
                    self._skip -= cut
                    piece = piece[cut:]
                if self.position + len(buf) + len(piece) > size:
                    self.close()
                    raise DataLoss(f"{self._what}: registry sent more than the {size} bytes the descriptor says",
                                   hint="the registry's copy does not match the image manifest")
                room = limit - len(buf)
                if len(piece) > room:
                    piece, self._carry = piece[:room], piece[room:]
                buf += piece
                if self._op.expired():
                    break
        except StopIteration:
            return bytes(buf), True, None
        except httpx.TimeoutException as exc:
            assert self._host is not None
            return self._stalled(buf, self._engine.timeout_error(self._host, self._op, exc))
        except httpx.TransportError as exc:
            return bytes(buf), False, exc
        except BaseException:
            self.close()
            raise
        return bytes(buf), False, None

    def _stalled(self, buf: bytearray, err: HawserError) -> tuple[bytes, bool, None]:
        """Give out what arrived before a stall (so the caller can keep it for a
        later resume) and raise ``err`` on the next call; with nothing to give, now."""
        if not buf:
            self.close()
            raise err from None
        self._pending = err
        self._drop()
        return bytes(buf), False, None

    def _resume(self) -> None:
        assert self._host is not None
        if self._failures >= self._engine.opts.max_retries:
            self.close()
            raise Unavailable(
                f"{self._what}: connection to {self._host.host} kept dropping at byte {self.position} "
                f"of {self._desc.size} ({self._failures + 1} tries)",
                hint="check the network to the registry and try again")
        # The first resume after progress is immediate; repeated failures back off.
        if self._failures:
            self._engine.pause(self._op, self._engine.backoff(self._failures - 1))
        self._failures += 1
        self.resumes += 1
        try:
            self._open(self._host, None)
        except BaseException:
            self.close()
            raise


def _raw_chunks(resp: httpx.Response) -> Iterator[bytes]:
    """The body as sent, no Content-Encoding decoding: a blob's bytes are what
    its digest covers.  Pieces come as the network delivers them."""
    if resp.is_stream_consumed:
        # A response built from bytes (an in-memory transport) comes pre-read.
        return iter([resp.content])
    return resp.iter_raw()


def _log_drop(stream: BlobStream, why: str) -> None:
    _log.info("%s: %s at byte %d of %d; resuming", stream._what, why, stream.position, stream._desc.size)


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(start, total) of ``bytes start-end/total``; None for parts that are missing or '*'."""
    value = value.strip()
    if not value.startswith("bytes "):
        return None, None
    span, _, total_text = value[6:].partition("/")
    start_text, _, _ = span.partition("-")
    start = int(start_text) if start_text.strip().isdigit() else None
    total = int(total_text) if total_text.strip().isdigit() else None
    return start, total

