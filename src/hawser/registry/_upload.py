"""Blob uploads, as the distribution spec's "Pushing blobs" describes them:
what ``RegistryClient.push_blob`` does for one blob on one host.

- A blob the repository has already (HEAD) is not sent.
- One that another repository of the same registry has is mounted from it
  (``POST .../blobs/uploads/?mount=<digest>&from=<repository>``: 201); a
  registry that cannot mount answers 202 with an ordinary upload session,
  which is then used.
- A blob up to ``UploadOptions.chunk_size`` goes in one ``PUT ?digest=``
  (monolithic); a bigger one in ``PATCH`` chunks (``Content-Range:
  start-end``, inclusive, each at least the registry's
  ``OCI-Chunk-Min-Length``) closed by an empty ``PUT ?digest=``.
- A chunked upload that breaks off (a dropped connection, a registry that
  restarts, a 5xx) asks the registry where it stands (``GET`` on the upload
  URL: its ``Range`` header) and goes on from that offset; a session the
  registry no longer knows (404, ``BLOB_UPLOAD_UNKNOWN``/``INVALID``) is begun
  again from byte 0.  A broken monolithic upload is begun again.  Failures in
  a row without progress are bounded by ``RegistryOptions.max_retries``,
  with the client's backoff between them.

The bytes are not hashed here: the registry checks them against the digest
the closing PUT names, and a mismatch is a ``DataLoss``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TypeAlias

import httpx

from hawser._dataclass import dataclass
from hawser._failpoints import failpoint
from hawser.errors import DataLoss, DeadlineExceeded, HawserError, InvalidArgument, PermissionDenied, Unavailable
from hawser.oci import Descriptor, Digest, Reference
from hawser.registry._auth import scope_for
from hawser.registry._hosts import RegistryHost
from hawser.registry._transport import Engine, Operation, status_error

_log = logging.getLogger("hawser.registry")

# Blobs up to this size go in one PUT; bigger ones in chunks of it.  Big
# enough that a chunk's request costs nothing beside its bytes, small enough
# that a drop loses little (the registry keeps every acknowledged chunk).
DEFAULT_CHUNK_SIZE = 32 << 20
# Bytes read from the source and handed to the connection at a time.
_PIECE = 1 << 20
# Upload session errors after which only a new session helps.
_SESSION_GONE = ("BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")

EXISTS, MOUNTED, UPLOADED = "exists", "mounted", "uploaded"

# A blob's bytes: in memory, a file's path, or a function that opens them
# afresh (called once per request that sends bytes; the caller's file object
# is closed after use).
BlobData: TypeAlias = bytes | str | os.PathLike[str] | Callable[[], BinaryIO]
# Told the offset of the byte about to be sent (and the blob's size at the end);
# it may raise to abort the upload (the exception comes out of push_blob).
UploadProgress: TypeAlias = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadOptions:
    """How blobs are sent.  ``chunk_size``: blobs up to it go in one request,
    bigger ones in chunks of it (raised to the registry's minimum)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise InvalidArgument(f"upload chunk size must be positive, not {self.chunk_size}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobPushed:
    """What pushing one blob took.  ``how``: EXISTS (the repository had it),
    MOUNTED (from ``mounted_from``) or UPLOADED.  ``sent`` counts the bytes put
    on the wire, those sent again after a failure included; ``chunks`` the
    PATCH requests the registry accepted (0: one PUT); ``resumes`` how often
    an upload went on from the offset the registry reported after a failure;
    ``restarts`` how often it began again at byte 0 (a lost session)."""

    digest: Digest
    size: int
    how: str
    mounted_from: str = ""
    sent: int = 0
    chunks: int = 0
    resumes: int = 0
    restarts: int = 0


class BlobSource:
    """The bytes of one blob, checked against its descriptor's size (and, in
    memory, its digest) before anything is sent."""

    def __init__(self, data: BlobData, desc: Descriptor) -> None:
        self.desc = desc
        self._bytes: bytes | None = None
        self._open: Callable[[], BinaryIO]
        if isinstance(data, bytes):
            if len(data) != desc.size or Digest.of(data, desc.digest.algorithm) != desc.digest:
                raise InvalidArgument(f"blob data does not match its descriptor {desc.digest} ({desc.size} bytes)")
            self._bytes = data
            return
        if callable(data):
            self._open = data
            return
        path = os.fspath(data)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise InvalidArgument(f"cannot read blob file {path}: {exc.strerror}") from None
        if size != desc.size:
            raise InvalidArgument(f"blob file {path} is {size} bytes, the descriptor says {desc.size}")
        self._open = lambda: open(path, "rb")  # noqa: SIM115 - closed by the reader below

    def body(self, offset: int, length: int, sent: Callable[[int], None]) -> Callable[[], Iterator[bytes]]:
        """A request body of ``length`` bytes from ``offset``: a fresh reader per
        try.  ``sent`` hears each piece's length as it is handed out."""
        def read() -> Iterator[bytes]:
            if self._bytes is not None:
                if length:
                    sent(0)
                    piece = self._bytes[offset:offset + length]
                    yield piece
                    sent(len(piece))
                return
            with self._open() as f:
                if offset:
                    f.seek(offset)
                left = length
                while left:
                    sent(0)
                    piece = f.read(min(_PIECE, left))
                    if not piece:
                        raise DataLoss(f"blob {self.desc.digest} ends at byte {offset + length - left}, "
                                       f"its descriptor says {self.desc.size} bytes")
                    left -= len(piece)
                    yield piece
                    sent(len(piece))
        return read


@dataclass(slots=True)
class _Session:
    url: httpx.URL
    min_chunk: int = 0


class Uploader:
    """Pushes one blob to one host (see the module's docstring).  Single use."""

    def __init__(self, engine: Engine, host: RegistryHost, op: Operation, ref: Reference, source: BlobSource, *,
                 uploads_url: httpx.URL, blob_url: httpx.URL, scope: str, options: UploadOptions,
                 progress: UploadProgress | None, retries: int | None) -> None:
        self._engine = engine
        self._host = host
        self._op = op
        self._ref = ref
        self._source = source
        self._desc = source.desc
        self._uploads_url = uploads_url
        self._blob_url = blob_url
        self._scope = scope
        self._options = options
        self._progress = progress
        self._retries = retries  # for idempotent requests (HEAD, POST): the engine's own retries
        self._budget = engine.opts.max_retries if retries is None else retries
        self._what = f"uploading blob {self._desc.digest}"
        self._sent = 0
        self._position = 0
        self._chunks = 0
        self._resumes = 0
        self._restarts = 0

    # --- the whole ------------------------------------------------------------

    def run(self, mount_from: Sequence[str]) -> BlobPushed:
        if self._exists():
            return self._result(EXISTS)
        session, mounted = self._start([r for r in mount_from if r and r != self._ref.path])
        if session is None:
            return self._result(MOUNTED, mounted)
        if self._desc.size <= self._options.chunk_size:
            return self._monolithic(session)
        return self._chunked(session)

    def _result(self, how: str, mounted_from: str = "") -> BlobPushed:
        return BlobPushed(digest=self._desc.digest, size=self._desc.size, how=how, mounted_from=mounted_from,
                          sent=self._sent, chunks=self._chunks, resumes=self._resumes, restarts=self._restarts)

    def _tell(self, position: int) -> None:
        self._position = position
        if self._progress is not None:
            self._progress(position)

    def _counter(self, start: int) -> Callable[[int], None]:
        self._tell(start)

        def sent(n: int) -> None:
            self._sent += n
            self._tell(self._position + n)
        return sent

    # --- requests -------------------------------------------------------------

    def _exists(self) -> bool:
        resp = self._engine.request(self._host, self._op, "HEAD", self._blob_url, scope=self._scope,
                                    retries=self._retries)
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise status_error(resp, host=self._host, what=f"checking blob {self._desc.digest}",
                           repository=self._ref.path, action="push")

    def _start(self, mount_from: Sequence[str]) -> tuple[_Session | None, str]:
        """A new upload session, or (None, repository) when a mount from it worked."""
        for i, source in enumerate(mount_from):
            url = self._uploads_url.copy_add_param("mount", str(self._desc.digest)).copy_add_param("from", source)
            # The token must grant pull at the source too: without it a registry does not
            # refuse (no 401 to learn the scope from), it starts an upload instead.
            scope = f"{self._scope} {scope_for(source)}"
            try:
                resp = self._engine.request(self._host, self._op, "POST", url, scope=scope,
                                            headers={"Content-Length": "0"}, retries=self._retries)
            except PermissionDenied as exc:
                # A token server may refuse pull access to the source: upload instead.
                _log.info("%s: no mount from %s: %s", self._what, source, exc)
                continue
            if resp.status_code == 201:
                _log.info("%s: mounted from %s", self._what, source)
                return None, source
            if resp.status_code == 202:
                session = self._session(resp)
                if i == len(mount_from) - 1:
                    return session, ""
                self._cancel(session)  # another source may have it
                continue
            err = status_error(resp, host=self._host, what=self._what, repository=self._ref.path, action="push")
            if isinstance(err, PermissionDenied):
                _log.info("%s: no mount from %s: %s", self._what, source, err)
                continue
            raise err
        return self._new_session(), ""

    def _new_session(self) -> _Session:
        resp = self._engine.request(self._host, self._op, "POST", self._uploads_url, scope=self._scope,
                                    headers={"Content-Length": "0"}, retries=self._retries)
        if resp.status_code != 202:
            raise status_error(resp, host=self._host, what=self._what, repository=self._ref.path, action="push")
        return self._session(resp)

    def _session(self, resp: httpx.Response) -> _Session:
        location = resp.headers.get("location")
        if not location:
            raise Unavailable(f"{self._what}: registry {self._host.host} gave no upload location")
        minimum = resp.headers.get("oci-chunk-min-length", "").strip()
        # Location may be relative or absolute (the spec allows both).
        return _Session(url=resp.url.join(location), min_chunk=int(minimum) if minimum.isdigit() else 0)

    def _move(self, session: _Session, resp: httpx.Response) -> None:
        """Clients use the most recent Location the registry gave (the spec)."""
        location = resp.headers.get("location")
        if location:
            session.url = resp.url.join(location)

    def _cancel(self, session: _Session) -> None:
        try:
            self._engine.request(self._host, self._op, "DELETE", session.url, scope=self._scope, retries=0)
        except HawserError as exc:
            _log.info("%s: cancelling an unused upload session: %s", self._what, exc)

    def _send(self, method: str, url: httpx.URL, *, offset: int, length: int,
              headers: dict[str, str]) -> httpx.Response:
        """One request carrying bytes; never retried here (its effect is unknown after a drop)."""
        body = self._source.body(offset, length, self._counter(offset)) if length else b""
        return self._engine.request(
            self._host, self._op, method, url, scope=self._scope, content=body, retries=0,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length), **headers})

    def _status(self, session: _Session) -> int | None:
        """Bytes the registry holds of the upload (GET on its URL), None when it lost the session."""
        resp = self._engine.request(self._host, self._op, "GET", session.url, scope=self._scope, retries=0)
        if resp.status_code in (200, 204):
            self._move(session, resp)
            return _range_count(resp)
        err = status_error(resp, host=self._host, what=self._what, repository=self._ref.path, action="push")
        if resp.status_code == 404 or _session_gone(err):
            return None
        raise err

    # --- the two ways ---------------------------------------------------------

    def _monolithic(self, session: _Session) -> BlobPushed:
        size = self._desc.size
        failures = 0
        while True:
            url = session.url.copy_set_param("digest", str(self._desc.digest))
            try:
                resp = self._send("PUT", url, offset=0, length=size, headers={})
            except (Unavailable, DeadlineExceeded) as exc:
                err: HawserError = exc
                dropped = True
            else:
                if resp.status_code in (201, 204):
                    self._tell(size)
                    return self._result(UPLOADED)
                err = status_error(resp, host=self._host, what=self._what, repository=self._ref.path, action="push")
                if not isinstance(err, Unavailable) and not _session_gone(err):
                    raise err
                dropped = False
            failures = self._failed(err, failures)
            # A PUT that broke off may have landed all the same; else (and after
            # an answer saying it did not) a new session.
            if dropped and self._exists():
                self._tell(size)
                return self._result(UPLOADED)
            session = self._new_session()
            self._restarts += 1

    def _chunked(self, session: _Session) -> BlobPushed:
        size = self._desc.size
        chunk = max(self._options.chunk_size, session.min_chunk)
        offset = 0
        failures = 0
        known = True  # False after a failure: where the upload stands is to be asked
        while True:
            self._op.check()
            try:
                if not known:
                    held = self._status(session)
                    known = True
                    if held is None:
                        _log.info("%s: registry %s lost the upload session; beginning again", self._what,
                                  self._host.host)
                        if self._exists():
                            self._tell(size)
                            return self._result(UPLOADED)
                        session = self._new_session()
                        chunk = max(self._options.chunk_size, session.min_chunk)
                        offset = 0
                        self._restarts += 1
                    else:
                        _log.info("%s: resuming at byte %d of %d (registry %s)", self._what, held, size,
                                  self._host.host)
                        offset = min(held, size)
                        self._resumes += 1
                    self._tell(offset)
                    continue
                if offset < size:
                    n = min(chunk, size - offset)
                    resp = self._send("PATCH", session.url, offset=offset, length=n,
                                      headers={"Content-Range": f"{offset}-{offset + n - 1}"})
                    if resp.status_code == 202:
                        self._move(session, resp)
                        held = _range_count(resp)
                        offset = offset + n if held is None else min(held, size)
                        self._chunks += 1
                        failures = 0
                        self._tell(offset)
                        failpoint("push.upload.after-chunk")
                        continue
                    if resp.status_code == 416:
                        # Out of step with the registry: it says where it is.
                        err: HawserError = Unavailable(f"{self._what}: registry {self._host.host} refused the "
                                                       f"chunk at byte {offset} (416)")
                        resp.close()
                        failures = self._failed(err, failures, at=offset, pause=False)
                        known = False
                        continue
                else:
                    url = session.url.copy_set_param("digest", str(self._desc.digest))
                    resp = self._send("PUT", url, offset=size, length=0, headers={})
                    if resp.status_code in (201, 204):
                        return self._result(UPLOADED)
                err = status_error(resp, host=self._host, what=self._what, repository=self._ref.path, action="push")
                if resp.status_code != 404 and not isinstance(err, Unavailable) and not _session_gone(err):
                    raise err
            except (Unavailable, DeadlineExceeded) as exc:
                err = exc
            failures = self._failed(err, failures, at=offset)
            known = False

    def _failed(self, err: HawserError, failures: int, *, at: int = 0, pause: bool = True) -> int:
        """Count a failure without progress (the registry holding ``at`` bytes);
        raise ``err`` once they are too many, else back off."""
        if self._op.expired():
            raise self._op.exceeded() from None
        if failures >= self._budget:
            raise type(err)(f"{err.message} (gave up at byte {at} of {self._desc.size} after {failures + 1} tries)",
                            hint=err.hint) from None
        delay = self._engine.backoff(failures)
        _log.info("%s: %s; retry %d/%d in %.1fs", self._what, err, failures + 1, self._budget, delay)
        if pause:
            self._engine.pause(self._op, delay)
        return failures + 1


def _session_gone(err: HawserError) -> bool:
    return any(code in err.message for code in _SESSION_GONE)


def _range_count(resp: httpx.Response) -> int | None:
    """Bytes an upload holds, from its ``Range: 0-<last>`` header (``bytes=`` optional);
    None without one.  ``0-0`` is read as nothing yet (the registry says that too)."""
    value = resp.headers.get("range", "").strip().removeprefix("bytes=")
    first, sep, last = value.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        return None
    end = int(last)
    return 0 if end == 0 else end + 1
