"""hawserd's pull worker with a fake checker and fake pulls: the real worker
loop (``hawser.images._pull_worker.serve``: the checker process, its
hand-over to a pull's process, cancellation, its deaths) with no store or
registry.  Run as a script, with hawserd's pid as its argument, as the worker
is: ``PullWorker(argv=[sys.executable, FAKE_CHECKER])``.

A reference is ``CHECK|PULL``: the checker does what CHECK says, and a pull
that gets a process of its own does what PULL says (as in
``fake_pull_worker``).  CHECK, slash-separated:

- ``present/N``: answered by the checker, having fetched N bytes;
- ``absent``: the pull gets a process;
- ``fail/KIND``: fails with that error kind (as a resolve's error);
- ``sleep/SECONDS/PIDFILE``: writes the checker's pid to PIDFILE, sleeps, answers as ``present/0``;
- ``crash``: the checker dies of SIGSEGV;
- ``bug``: raises a RuntimeError in the checker.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from hawser.images._pull_worker import serve

FAKE_CHECKER = os.path.abspath(__file__)


def fake_check(request: Mapping[str, Any]) -> dict[str, Any] | None:
    what, *args = str(request["reference"]).partition("|")[0].split("/", 2)
    if what == "present":
        return {"stats": {"bytes_fetched": int(args[0]), "layers_fetched": 0, "layers_present": 1,
                          "seconds": {"resolve": 0.001}}}
    if what == "absent":
        return None
    if what == "fail":
        return {"kind": args[0], "message": f"fake check {args[0]}", "hint": None}
    if what == "sleep":
        with open(args[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(args[0]))
        return {"stats": None}
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    raise RuntimeError(f"boom in the check: {what}")


def pull(request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    from fake_pull_worker import fake_pull  # beside this script, which runs as a script

    return fake_pull({**request, "reference": str(request["reference"]).partition("|")[2]})


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), pull=pull, check=fake_check))
