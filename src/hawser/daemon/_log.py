"""Structured logs: one ``key=value`` line per event on stderr (logfmt, as containerd writes).

    time=2025-01-02T03:04:05.678Z level=info logger=hawser.cri.image_pull msg="pull done" image=... duration=1.2

or, with ``--log-format json``, one JSON object per line with the same fields:

    {"time": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "hawser.cri.image_pull", "msg": "pull done", ...}

A record's fields are its ``extra`` attributes.  A traceback is one quoted
value, so every event stays on one line for journald and log shippers.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any

# Attributes every LogRecord has: whatever else a record carries is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"time={stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            parts.append(f"error={_quote(f'{type(exc).__name__}: {exc}')}")
            parts.append(f"traceback={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _json_value(value: Any) -> Any:
    """``value`` if JSON writes it as itself, else its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, msg, then every ``extra``
    field (one named like those four cannot replace it), then error and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        event: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in event:
                event[key] = _json_value(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            event["error"] = f"{type(exc).__name__}: {exc}"
            event["traceback"] = self.formatException(record.exc_info)
        # ensure_ascii (the default): a stray surrogate in a message still makes a valid line.
        return json.dumps(event)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": KeyValueFormatter, "json": JsonFormatter}


def setup_logging(level: str, log_format: str = "text") -> None:
    """Send every hawser log record to stderr, one line each, from ``level`` up,
    as ``key=value`` pairs (``log_format`` "text") or a JSON object ("json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every registry request at info, grpc and asyncio chatter at debug;
    # hawser's own events say what matters.
    for noisy in ("httpx", "httpcore", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("grpc._cython.cygrpc").addFilter(_client_went_away)


def _client_went_away(record: logging.LogRecord) -> bool:
    """grpc logs an answer it could not send, because its client went away
    mid-call (a killed ``ctr``), as an error with a traceback: that is the
    client's doing, not hawserd's.  Other grpc errors are kept."""
    return "ExecuteBatchError" not in record.getMessage()
