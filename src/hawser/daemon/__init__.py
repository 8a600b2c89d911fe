"""hawserd: the daemon serving Kubernetes' CRI v1 on a unix socket.

``main`` is the ``hawserd`` command; ``Daemon`` (in ``_daemon``) is the
composition root that builds and wires every part.
"""

from __future__ import annotations

import os

# grpc's EventEngine listener reads a request on threads of its own and hands
# it over to the poller thread that wakes the event loop; without it the poller
# reads the socket itself: two thread switches fewer per request, about a
# fifth less CPU for the small requests ctr makes by the dozen (bench/ctr.sh).
# Read when grpc starts its core, so set before any server or channel exists;
# an operator's own GRPC_EXPERIMENTS wins.
GRPC_EXPERIMENTS = "-event_engine_listener"


def main(argv: list[str] | None = None) -> int:
    """Run hawserd with ``argv`` (default: the command line); returns the exit status."""
    os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)
    from hawser.daemon._main import run

    return run(argv)
