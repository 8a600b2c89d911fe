"""Just enough HTTP/1.1 for an upgrade: read one request head, write one response head.

The streaming server never reads request bodies and never keeps a
connection alive for a second request: every connection either upgrades or
gets one answer and is closed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from hawser._dataclass import dataclass

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_HEAD = 32 * 1024
MAX_HEADERS = 100


class HttpError(Exception):
    """Answer the request with ``status`` and a one-line text body."""

    def __init__(self, status: int, message: str, *, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]  # names lowercased, in arrival order

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_tokens(self, name: str) -> list[str]:
        """Every comma-separated item of every ``name`` header, stripped (for list-valued headers)."""
        name = name.lower()
        return [item.strip() for key, value in self.headers if key == name for item in value.split(",")
                if item.strip()]

    def query_values(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


async def read_request(reader: asyncio.StreamReader) -> HttpRequest:
    """Read and parse one request head. HttpError for anything malformed or too large."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "request head too large") from exc
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HttpError(505, "only HTTP/1.1 can upgrade")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many request headers")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            # This also refuses obsolete line folding (a line starting with whitespace).
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        headers.append((name.lower(), value.strip(" \t")))
    split = urlsplit(target)
    if not target.startswith("/"):
        raise HttpError(400, "request target must be a path")
    request = HttpRequest(method, target, split.path, tuple(parse_qsl(split.query, keep_blank_values=True)),
                          tuple(headers))
    if request.header("transfer-encoding") is not None:
        raise HttpError(400, "request bodies are not accepted")
    length = request.header("content-length")
    if length is not None and length.strip() != "0":
        raise HttpError(400, "request bodies are not accepted")
    return request


def render_response(status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """A response head (and body) ready for the wire."""
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if status != 101:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def render_error(error: HttpError) -> bytes:
    body = (error.message + "\n").encode("utf-8")
    headers = [*error.headers, ("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
    return render_response(error.status, headers, body)
