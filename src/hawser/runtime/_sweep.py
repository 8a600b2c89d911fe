"""What is left of a container once its main process is gone.

A container's own pid namespace dies with its init: the kernel kills the rest.
In a pod's shared pid namespace (or the host's) the children of an exited
main process are re-parented to the namespace's init and live on, in the
container's cgroup.  A container is not Exited while it still has processes:
before its status says so, every process left in its cgroup is killed and
waited for (containerd kills the container's cgroup in the same case).  A
``swept`` stamp in the bundle makes later status reads skip the cgroup.
"""

from __future__ import annotations

import os
import time

from hawser._logging import get_logger
from hawser.errors import HawserError, NotFound
from hawser.runtime._files import backoff, write_text

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Callable

    from hawser.host import CgroupLayout

log = get_logger(__name__)

SWEPT = "swept"
# How long the processes left may take to die after SIGKILL (one in D state may take a while).
SWEEP_WAIT = 5.0


def sweep(bundle: str, cgroup: str, layout: Callable[[], CgroupLayout]) -> bool:
    """Kill every process left in ``cgroup`` and wait until none is left; True
    when none is (stamped in ``bundle``), False if some outlived SWEEP_WAIT
    (logged; the next status read tries again).  Blocking."""
    stamp = os.path.join(bundle, SWEPT)
    if not cgroup or os.path.exists(stamp) or not os.path.isdir(bundle):
        return True
    from hawser.host import cgroup_pids, kill_cgroup

    deadline = time.monotonic() + SWEEP_WAIT
    left: list[int] = []
    try:
        for pause in backoff():
            try:
                left = cgroup_pids(layout(), cgroup)
            except NotFound:
                left = []
            if not left:
                write_text(stamp, "")
                return True
            if time.monotonic() >= deadline:
                break
            kill_cgroup(layout(), cgroup)
            time.sleep(pause)
    except (HawserError, OSError) as exc:
        log.warning("cannot kill what is left of a container", extra={"cgroup": cgroup, "error": str(exc)})
        return False
    log.warning("processes of an exited container outlived SIGKILL", extra={"cgroup": cgroup, "pids": left[:10]})
    return False
