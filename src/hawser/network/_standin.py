"""A stand-in network namespace for DEL when the pod's own is gone.

The spec lets a runtime DEL with an empty CNI_NETNS, and IPAM releases its
addresses then, but interface plugins that clean host state keyed by the
pod's address read that address from the pod's interface: Debian's bridge
plugin (1.1.1) removes its ipMasq chain only after finding CNI_IFNAME inside
CNI_NETNS, so with the namespace gone the masquerade chain would stay forever.
hawser knows the addresses from the cached ADD result, so it hands the plugins
a scratch namespace holding an interface of that name with those
addresses; the plugins then run their normal teardown, and the scratch
namespace is removed afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Sequence

from hawser.errors import HawserError
from hawser.host import pin_namespaces, remove_pin_dir, run_in_netns, run_process

log = logging.getLogger("hawser.network")


def make_standin(directory: str, ifname: str, addresses: Sequence[str]) -> str | None:
    """Pin a new network namespace under ``directory`` holding an interface
    ``ifname`` with ``addresses`` (CIDR); return its path, or None (logged)
    when it cannot be built.  Blocking."""
    try:
        pins = pin_namespaces(directory, ["net"], loopback_up=False)
    except OSError as exc:
        log.warning("cannot create a stand-in netns at %s: %s", directory, exc)
        remove_standin(directory)
        return None
    path = pins["net"]

    def build() -> None:
        # children of this thread start in the stand-in namespace
        def ip(*args: str) -> None:
            result = run_process(["ip", *args], timeout=30)
            if result.returncode != 0:
                raise OSError(f"ip {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")

        # a veth pair, both ends here: the dummy driver is not in every kernel
        ip("link", "add", ifname, "type", "veth", "peer", "name", "hws" + secrets.token_hex(4))
        for address in addresses:
            ip("addr", "add", address, "dev", ifname)
        ip("link", "set", ifname, "up")

    try:
        run_in_netns(path, build)
    except (OSError, HawserError) as exc:
        log.warning("cannot build a stand-in netns for %s: %s", ifname, exc)
        remove_standin(directory)
        return None
    return path


def remove_standin(directory: str) -> None:
    """Remove a stand-in namespace and its directory.  Idempotent, never raises."""
    with contextlib.suppress(OSError):
        remove_pin_dir(directory)
    with contextlib.suppress(OSError):
        os.rmdir(directory)
