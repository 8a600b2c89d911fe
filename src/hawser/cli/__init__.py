"""The ``hawser`` command."""

from __future__ import annotations


def main() -> None:
    """The console script: run the command, then leave without tearing the
    interpreter down. Everything hawser writes is committed or flushed by the
    time a command returns (the same holds after a kill -9, which tests prove),
    and the teardown of ~150 modules costs a cold `hawser run` ~5 ms."""
    import gc
    import os
    import sys

    # Importing allocates ~100k objects, none of them garbage: at the default
    # threshold (700) the collector runs ~150 times for nothing (~2 ms).
    gc.set_threshold(50_000, 20, 20)

    from hawser.cli._main import run

    try:
        run()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = 141 if code == 0 else code
    sys.stderr.flush()
    os._exit(code)
