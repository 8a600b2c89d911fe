"""The Kubernetes remote-command protocol (exec and attach) over SPDY and WebSocket.

Both transports carry the same five streams: stdin, stdout, stderr, error
and resize.  Over SPDY the client opens one stream per role, named by its
``streamtype`` header (error first); over WebSocket they are channels 0-4.
The session ends with one message on the error stream:

* v4 and v5: a v1 ``Status`` as JSON: ``{"status": "Success"}``, or a
  Failure whose reason ``NonZeroExitCode`` carries the exit code in
  ``details.causes[{reason: "ExitCode", message: "N"}]`` (kubectl turns that
  into its own exit code), or a Failure with the error's message.
* v2 and v3 (SPDY only): plain text, nothing at all on success.

v3 added the resize stream (JSON ``{"Width": w, "Height": h}`` objects);
v5 added the WebSocket close signal (see ``_wschannel``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from hawser._dataclass import dataclass
from hawser.cri.streaming._spdy import RstStatus
from hawser.cri.streaming._spdy_conn import SpdyConnection, SpdyStream
from hawser.cri.streaming._types import (
    AsyncReader,
    AsyncWriter,
    AttachRequest,
    ExecRequest,
    StreamingRuntime,
    TerminalSize,
)
from hawser.cri.streaming._ws_conn import WebSocketConnection
from hawser.cri.streaming._wschannel import WsChannels
from hawser.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    HawserError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)

log = logging.getLogger(__name__)

V2 = "v2.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V5 = "v5.channel.k8s.io"

# In server preference order; the client's order decides among these.
SPDY_PROTOCOLS = (V4, V3, V2)
WEBSOCKET_PROTOCOLS = (V5, V4, V4_BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)

NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"

# The largest resize message worth buffering: a TerminalSize is ~30 bytes.
_MAX_RESIZE_BUFFER = 4096


@dataclass(frozen=True, slots=True)
class SessionStreams:
    """The streams of one session, whatever transport carries them."""

    stdin: AsyncReader | None
    stdout: AsyncWriter | None
    stderr: AsyncWriter | None
    error: AsyncWriter | None
    resize: AsyncReader | None


# Status reason and HTTP code per error kind: the one place this edge maps them.
_STATUS_OF_ERROR: tuple[tuple[type[HawserError], str, int], ...] = (
    (NotFound, "NotFound", 404),
    (AlreadyExists, "AlreadyExists", 409),
    (FailedPrecondition, "Conflict", 409),
    (InvalidArgument, "BadRequest", 400),
    (PermissionDenied, "Forbidden", 403),
    (DeadlineExceeded, "Timeout", 504),
    (Unavailable, "ServiceUnavailable", 503),
    (ResourceExhausted, "TooManyRequests", 429),
    (Unimplemented, "MethodNotAllowed", 405),
)


def status_success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def status_exit_code(code: int, what: str) -> dict[str, Any]:
    """The Failure kubectl reads as "the command exited with ``code``"."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {what} exited with {code}",
        "reason": NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def status_error(error: HawserError) -> dict[str, Any]:
    """The Failure for an error the runtime raised; its message reaches the user."""
    reason, code = "InternalError", 500
    for kind, kind_reason, kind_code in _STATUS_OF_ERROR:
        if isinstance(error, kind):
            reason, code = kind_reason, kind_code
            break
    return {"metadata": {}, "status": "Failure", "message": str(error), "reason": reason, "code": code}


def encode_status(status: dict[str, Any], *, structured: bool) -> bytes:
    """The error-stream bytes for ``status``: JSON (v4, v5) or its message as text (v2, v3)."""
    if structured:
        return json.dumps(status, separators=(",", ":")).encode("utf-8")
    if status["status"] == "Success":
        return b""
    return str(status.get("message", "error")).encode("utf-8")


class ResizeEvents:
    """Terminal sizes decoded from a resize stream of concatenated JSON objects.

    Ends when the stream ends.  A malformed message ends it too (logged), the
    way the kubelet stops handling resizes instead of failing the session.
    """

    def __init__(self, stream: AsyncReader | None) -> None:
        self._stream = stream
        self._buffer = b""

    def __aiter__(self) -> AsyncIterator[TerminalSize]:
        return self

    async def __anext__(self) -> TerminalSize:
        while True:
            try:
                raw = self._take_object()
                if raw is not None:
                    return _terminal_size(raw)
            except ValueError as exc:
                log.info("ignoring the rest of a resize stream: %s", exc)
                self._stream, self._buffer = None, b""
            if self._stream is None:
                raise StopAsyncIteration
            chunk = await self._stream.read(1024)
            if not chunk:
                self._stream = None
                raise StopAsyncIteration
            self._buffer += chunk

    def _take_object(self) -> bytes | None:
        """Cut the first complete top-level JSON object off the buffer; None if it is still incomplete."""
        text = self._buffer.lstrip()
        self._buffer = text
        if not text:
            return None
        if text[:1] != b"{":
            raise ValueError(f"resize message does not start with an object: {text[:20]!r}")
        depth, in_string, escaped = 0, False, False
        # Braces, quotes and backslashes are ASCII, so scanning UTF-8 bytes is safe.
        for index, byte in enumerate(text):
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 0x5C:  # backslash
                    escaped = True
                elif byte == 0x22:  # quote
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte == 0x7B:  # {
                depth += 1
            elif byte == 0x7D:  # }
                depth -= 1
                if depth == 0:
                    self._buffer = text[index + 1:]
                    return text[:index + 1]
        if len(text) > _MAX_RESIZE_BUFFER:
            raise ValueError("resize message too large")
        return None


def _terminal_size(raw: bytes) -> TerminalSize:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"malformed resize message: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"resize message is not an object: {raw[:100]!r}")
    # Go's decoder matches field names case-insensitively; so do we.
    fields = {str(key).lower(): item for key, item in value.items()}
    width, height = fields.get("width"), fields.get("height")
    for number in (width, height):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 65536:
            raise ValueError(f"malformed resize message: {raw[:100]!r}")
    assert isinstance(width, int) and isinstance(height, int)
    return TerminalSize(width, height)


async def run_session(runtime: StreamingRuntime, request: ExecRequest | AttachRequest, streams: SessionStreams, *,
                      structured: bool) -> None:
    """Call the runtime with the session's streams, then report how it went on the error stream."""
    resize = ResizeEvents(streams.resize)
    status: dict[str, Any]
    try:
        if isinstance(request, ExecRequest):
            code = await runtime.exec(request.container_id, request.cmd, tty=request.tty, stdin=streams.stdin,
                                      stdout=streams.stdout, stderr=streams.stderr, resize=resize)
            status = status_success() if code == 0 else status_exit_code(code, f"command {list(request.cmd)!r}")
        else:
            await runtime.attach(request.container_id, tty=request.tty, stdin=streams.stdin,
                                 stdout=streams.stdout, stderr=streams.stderr, resize=resize)
            status = status_success()
    except HawserError as exc:
        status = status_error(exc)
    except Exception as exc:
        # Anything but an error kind is a bug in the runtime: log it whole,
        # tell the client only that it happened.
        log.exception("streaming runtime call failed for container %s", request.container_id)
        status = {"metadata": {}, "status": "Failure", "message": f"internal error: {type(exc).__name__}",
                  "reason": "InternalError", "code": 500}
    for output in (streams.stdout, streams.stderr):
        if output is not None:
            await output.close()
    if streams.error is not None:
        message = encode_status(status, structured=structured)
        if message:
            await streams.error.write(message)
        await streams.error.close()


async def _race(session: asyncio.Task[None], gone: asyncio.Task[Any], *others: asyncio.Task[Any]) -> bool:
    """Wait for the session or the client's departure; cancel the loser. True if the session finished."""
    try:
        await asyncio.wait({session, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished = session.done() and not session.cancelled()
        tasks = (session, gone, *others)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("streaming session task failed", exc_info=task.exception())
    return finished


def expected_spdy_streams(request: ExecRequest | AttachRequest, protocol: str) -> set[str]:
    """The stream types a client opens for ``request`` (the error stream always, resize with a tty from v3)."""
    expected = {"error"}
    if request.stdin:
        expected.add("stdin")
    if request.stdout:
        expected.add("stdout")
    if request.stderr:
        expected.add("stderr")
    if request.tty and protocol != V2:
        expected.add("resize")
    return expected


async def serve_spdy(conn: SpdyConnection, runtime: StreamingRuntime, request: ExecRequest | AttachRequest, *,
                     protocol: str, stream_timeout: float) -> None:
    """Collect the client's streams, run the session, report its status. The caller shuts ``conn`` down."""
    expected = expected_spdy_streams(request, protocol)
    streams: dict[str, SpdyStream] = {}
    try:
        async with asyncio.timeout(stream_timeout):
            while not expected <= streams.keys():
                stream = await conn.accept()
                if stream is None:
                    return  # the client left before the session started
                kind = (stream.header("streamtype") or "").lower()
                if kind not in expected or kind in streams:
                    await stream.reset(RstStatus.PROTOCOL_ERROR)
                    continue
                # The client waits for each reply before it opens the next stream.
                await conn.reply(stream)
                streams[kind] = stream
    except TimeoutError:
        missing = ", ".join(sorted(expected - streams.keys()))
        log.info("SPDY client did not open its streams in %ss (missing %s)", stream_timeout, missing)
        error = streams.get("error")
        if error is not None:
            failure = status_error(DeadlineExceeded(f"timed out waiting for the client to open streams: {missing}"))
            await error.write(encode_status(failure, structured=protocol == V4))
            await error.close()
        return
    for kind in ("stdout", "stderr", "error"):
        if kind in streams:
            streams[kind].discard_inbound()
    session_streams = SessionStreams(stdin=streams.get("stdin"), stdout=streams.get("stdout"),
                                     stderr=streams.get("stderr"), error=streams["error"],
                                     resize=streams.get("resize"))
    session = asyncio.create_task(run_session(runtime, request, session_streams, structured=protocol == V4))
    gone = asyncio.create_task(conn.wait_closed())
    refuse = asyncio.create_task(_refuse_streams(conn))
    if not await _race(session, gone, refuse):
        log.info("streaming client left; %s in container %s cancelled",
                 "exec" if isinstance(request, ExecRequest) else "attach", request.container_id)
    for stream in streams.values():
        # Done: drop late client data (stdin after the process exited) and
        # end our side of every stream, stdin and resize included.
        stream.discard_inbound()
        await stream.close()


async def _refuse_streams(conn: SpdyConnection) -> None:
    # Once the session runs, extra streams have no role: refuse them.
    while (stream := await conn.accept()) is not None:
        await stream.reset(RstStatus.REFUSED_STREAM)


async def serve_websocket(ws: WebSocketConnection, runtime: StreamingRuntime, request: ExecRequest | AttachRequest,
                          *, protocol: str) -> None:
    """Run one session over the channel protocol. The caller closes ``ws``."""
    readable = [STDIN] if request.stdin else []
    if request.tty:
        readable.append(RESIZE)
    channels = WsChannels(ws, base64_text=protocol == V4_BASE64, close_signal=protocol == V5, readable=readable)
    demux = asyncio.create_task(channels.run())
    # Like the kubelet: an empty message on the lowest channel we write tells
    # the client the session is up.
    await channels.send(STDOUT if request.stdout else STDERR if request.stderr else ERROR, b"")
    session_streams = SessionStreams(
        stdin=channels.reader(STDIN) if request.stdin else None,
        stdout=channels.writer(STDOUT) if request.stdout else None,
        stderr=channels.writer(STDERR) if request.stderr else None,
        error=channels.writer(ERROR),
        resize=channels.reader(RESIZE) if request.tty else None,
    )
    session = asyncio.create_task(run_session(runtime, request, session_streams, structured=True))
    try:
        await asyncio.wait({session, demux}, return_when=asyncio.FIRST_COMPLETED)
        if session.done():
            channels.stop_reading()
            # The demux loop keeps running through the close handshake: the
            # client's answering close frame is read there.
            await ws.close()
        else:
            log.info("WebSocket streaming client left; session for container %s cancelled", request.container_id)
    finally:
        for task in (session, demux):
            task.cancel()
        await asyncio.wait((session, demux))
        for task in (session, demux):
            if not task.cancelled() and task.exception() is not None:
                log.error("streaming session task failed", exc_info=task.exception())
