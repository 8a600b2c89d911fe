"""hawserd: the daemon serving Kubernetes' CRI v1 on a unix socket.

``main`` is the ``hawserd`` command; ``Daemon`` (in ``_daemon``) is the
composition root that builds and wires every part.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run hawserd with ``argv`` (default: the command line); returns the exit status."""
    from hawser.daemon._main import run

    return run(argv)
