"""hawserd's pull worker with fake pulls: the real worker loop
(``hawser.images._pull_worker.serve``: fork per pull, answers, cancellation,
stdin's end), but each pull does what its reference says, with no store or
registry.  Run as a script, with hawserd's pid as its argument, as the
worker is: ``PullWorker(argv=[sys.executable, FAKE_WORKER])``.

References (slash-separated):

- ``ok/N``: succeeds, having fetched N bytes;
- ``fail/KIND``: fails with that error kind (hint "fake hint");
- ``sleep/SECONDS/PIDFILE``: writes its pid to PIDFILE, sleeps, succeeds;
- ``crash``: dies of SIGSEGV, as a codec that crashes would;
- ``bug``: raises a RuntimeError (not an error kind): a bug.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from hawser.images._pull_worker import serve

FAKE_WORKER = os.path.abspath(__file__)


def fake_pull(request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    what, *args = str(request["reference"]).split("/", 2)
    if what == "ok":
        return 0, {"stats": {"bytes_fetched": int(args[0]), "layers_fetched": 1, "layers_present": 0,
                             "seconds": {"fetch": 0.5}}}
    if what == "fail":
        return 1, {"kind": args[0], "message": f"fake {args[0]}", "hint": "fake hint"}
    if what == "sleep":
        with open(args[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(args[0]))
        return 0, {"stats": None}
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    raise RuntimeError(f"boom: {what}")


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), pull=fake_pull))
