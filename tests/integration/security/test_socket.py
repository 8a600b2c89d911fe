"""The CRI socket is the only door to hawserd, and whoever passes it can ask
for a privileged pod: a host user outside root's group must be turned away
by the socket's own permissions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.hawserd import Hawserd

pytestmark = pytest.mark.integration

CONNECT = """
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def _connect_as(address: str, *, groups: list[int]) -> str:
    # The venv's interpreter may sit under a dir that user cannot enter (a
    # clone in /root, mode 0700); the script needs only the standard library,
    # so the base interpreter does, from a cwd anyone may enter.
    proc = subprocess.run([os.path.realpath(sys.executable), "-I", "-c", CONNECT, address], cwd="/",
                          user=65534, group=65534, extra_groups=groups, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_host_users_cannot_connect(hawserd: Hawserd) -> None:
    # Open the test's private socket dir, as /run/hawser (0711) is: only the
    # socket's mode is left to decide.
    os.chmod(os.path.dirname(hawserd.address), 0o711)
    assert _connect_as(hawserd.address, groups=[]) == "EACCES"
    assert _connect_as(hawserd.address, groups=[0]) == "connected"  # root's group is let in, by design
