"""Unpack one layer in its own process: ``python -m hawser.images._unpack_worker``.

    python -m hawser.images._unpack_worker --path DIR --compression gzip|zstd|none \\
        [--overlay] [--lower DIR ...] [--allow-lower-needed] [--no-sync]

reads the *compressed* layer from stdin as it arrives (streamed from a
download), decompresses and applies it to DIR, and prints one JSON line:

    {"diff_id": "sha256:...", "size": N, "implicit_dirs": [...], "entries": N}

and exits 0; or, on failure,

    {"error": "InvalidArgument", "message": "...", "hint": "..." or null}

and exits 1.  ``error`` is a :mod:`hawser.errors` kind name (InvalidArgument,
ResourceExhausted, Internal, ...) or ``LowerNeeded``: with
``--allow-lower-needed`` the layer hardlinks into a lower layer that was not
given (see :class:`hawser.images._apply.LowerNeeded`).  On failure the worker
exits at once without reading the rest of stdin: the parent sees a broken
pipe, keeps storing the blob, and reads this line.

Startup imports only the applier and its decompressor; never the CLI, HTTP
or store modules.
"""

from __future__ import annotations

import json
import os
import sys


def _parse(argv: list[str]) -> dict[str, object]:
    # argparse would do, but costs an import; the parent is the only caller.
    opts: dict[str, object] = {"path": None, "compression": None, "overlay": False, "lowers": [],
                               "allow_lower_needed": False, "sync": True}
    lowers: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("--path", "--compression", "--lower"):
            try:
                value = next(it)
            except StopIteration:
                raise SystemExit(f"{arg} needs a value") from None
            if arg == "--lower":
                lowers.append(value)
            else:
                opts[arg[2:]] = value
        elif arg == "--overlay":
            opts["overlay"] = True
        elif arg == "--allow-lower-needed":
            opts["allow_lower_needed"] = True
        elif arg == "--no-sync":
            opts["sync"] = False
        else:
            raise SystemExit(f"unknown argument {arg!r}")
    if not opts["path"] or opts["compression"] not in ("none", "gzip", "zstd"):
        raise SystemExit("usage: --path DIR --compression none|gzip|zstd [--overlay] [--lower DIR ...] "
                         "[--allow-lower-needed] [--no-sync]")
    opts["lowers"] = lowers
    return opts


def _reply(obj: dict[str, object]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the worker; returns the exit status (0 applied, 1 failed)."""
    try:
        opts = _parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:
        _reply({"error": "InvalidArgument", "message": f"unpack worker: {e}"})
        return 1
    from hawser.errors import HawserError
    from hawser.images._apply import LowerNeeded, apply_raw
    from hawser.images._decompress import open_decompressed
    from hawser.snapshots import ApplyTarget

    # Unbuffered stdin: the raw fd returns what the pipe has, so unpacking
    # keeps pace with the download instead of waiting for full buffers.
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
    target = ApplyTarget(path=str(opts["path"]), overlay_whiteouts=bool(opts["overlay"]),
                         lowers=tuple(opts["lowers"]))  # type: ignore[arg-type]
    try:
        stream = open_decompressed(stdin, opts["compression"])  # type: ignore[arg-type]
        result = apply_raw(stream, target, parent_pending=bool(opts["allow_lower_needed"]),
                           sync=bool(opts["sync"]))
    except LowerNeeded as e:
        _reply({"error": "LowerNeeded", "message": str(e)})
        return 1
    except HawserError as e:
        _reply({"error": type(e).__name__, "message": e.message, "hint": e.hint})
        return 1
    except Exception as e:  # anything else is a bug: report it as Internal, with its type
        _reply({"error": "Internal", "message": f"unpack worker: {type(e).__name__}: {e}"})
        return 1
    _reply({"diff_id": f"sha256:{result.sha256}", "size": result.size, "implicit_dirs": list(result.implicit_dirs),
            "entries": result.entries})
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    # Skip interpreter teardown: nothing is left to flush, and it costs time per layer.
    os._exit(status)
