"""Pinned pod namespaces (hawser.host): created, joined, propagated, removed."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.host import (
    is_netns,
    namespace_kind,
    pin_namespaces,
    remove_pin_dir,
    run_in_namespaces,
    run_in_netns,
    unpin_namespace,
)
from tests.support.cni import links, mounts_under, sh, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pin_dir(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "pod")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            remove_pin_dir(path)
        for line in mounts_under(str(tmp_path)):
            subprocess.run(["umount", "-l", line.split()[4]], check=False)


def ns_id(path: str) -> int:
    return os.stat(path).st_ino


def test_pin_creates_new_namespaces_with_hostname_and_loopback(pin_dir: str) -> None:
    start = time.perf_counter()
    pins = pin_namespaces(pin_dir, hostname="web-0")
    elapsed = time.perf_counter() - start
    assert pins == {kind: os.path.join(pin_dir, kind) for kind in ("net", "ipc", "uts")}
    for kind, path in pins.items():
        assert namespace_kind(path) == kind
        assert ns_id(path) != ns_id(f"/proc/self/ns/{kind}"), f"{kind} namespace is the host's"
    assert is_netns(pins["net"]) and not is_netns(pins["uts"]) and not is_netns("/etc/hostname")
    assert namespace_kind("/nonexistent") is None and namespace_kind("/proc/self/ns/mnt") == "mnt"
    # the caller's own namespaces are untouched
    assert os.uname().nodename != "web-0"
    assert run_in_namespaces({"uts": pins["uts"]}, lambda: os.uname().nodename) == "web-0"
    # lo is up: a connection to 127.0.0.1 works inside the pod
    def loopback_roundtrip() -> bytes:
        with socket.create_server(("127.0.0.1", 0)) as server, \
                socket.create_connection(server.getsockname(), timeout=2) as client:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"up")
            return client.recv(2)
    assert run_in_netns(pins["net"], loopback_roundtrip) == b"up"
    # and it is the only interface there
    assert run_in_netns(pins["net"], socket.if_nameindex) == [(1, "lo")]
    # a child spawned from inside sees the pod's network too
    out = run_in_netns(pins["net"], lambda: sh("ip", "-o", "link"))
    assert len(out.splitlines()) == 1 and ": lo:" in out
    assert elapsed < 0.5


def test_pin_dir_is_a_shared_mount_of_its_own(pin_dir: str) -> None:
    pin_namespaces(pin_dir, ["net"])
    mine = {line.split()[4]: line for line in mounts_under(os.path.dirname(pin_dir))}
    assert set(mine) == {pin_dir, os.path.join(pin_dir, "net")}
    assert " shared:" in mine[pin_dir]
    assert " nsfs " in mine[os.path.join(pin_dir, "net")]


def test_unpin_removes_the_mounts_and_ends_the_namespace(pin_dir: str) -> None:
    pins = pin_namespaces(pin_dir)
    # a veth with one end in the pod and one on the host dies with the pod's netns
    host_end = f"hwtv{secrets.token_hex(3)}"
    try:
        run_in_netns(pins["net"], lambda: sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth9"))
        run_in_netns(pins["net"], lambda: sh("ip", "link", "set", host_end, "netns", str(os.getpid())))
        assert host_end in links()
        remove_pin_dir(pin_dir)
        assert mounts_under(os.path.dirname(pin_dir)) == []
        assert not os.path.exists(pin_dir)
        wait_until(lambda: host_end not in links(), what="the pod's netns to be destroyed")
    finally:
        sh("ip", "link", "del", host_end, check=False)
    remove_pin_dir(pin_dir)  # idempotent
    unpin_namespace(pins["net"])


def test_unpin_reaches_copies_in_mount_namespaces_cloned_later(pin_dir: str) -> None:
    pins = pin_namespaces(pin_dir)
    # a slave copy (runc's default rootfs propagation, systemd services) and a peer copy
    children = [subprocess.Popen(["unshare", "--mount", "--propagation", prop, "sleep", "60"])
                for prop in ("slave", "unchanged")]
    try:
        for child in children:
            wait_until(lambda c=child: os.readlink(f"/proc/{c.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"),
                       what="the child's mount namespace")
            with open(f"/proc/{child.pid}/mountinfo") as f:
                assert pins["net"] in f.read()
        remove_pin_dir(pin_dir)
        for child in children:
            with open(f"/proc/{child.pid}/mountinfo") as f:
                leftover = [line for line in f if pin_dir in line]
            assert leftover == [], "an unmount did not propagate: the copy would keep the namespace alive"
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_pins_made_after_a_clone_propagate_into_it(pin_dir: str) -> None:
    pin_namespaces(pin_dir, ["uts"])
    child = subprocess.Popen(["unshare", "--mount", "--propagation", "slave", "sleep", "60"])
    try:
        wait_until(lambda: os.readlink(f"/proc/{child.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"),
                   what="the child's mount namespace")
        unpin_namespace(os.path.join(pin_dir, "uts"))
        pins = pin_namespaces(pin_dir, ["net"])
        with open(f"/proc/{child.pid}/mountinfo") as f:
            assert pins["net"] in f.read()
        unpin_namespace(pins["net"])
        with open(f"/proc/{child.pid}/mountinfo") as f:
            assert pins["net"] not in f.read()
    finally:
        child.kill()
        child.wait()


def test_pinning_twice_is_refused_and_a_failure_leaves_nothing(pin_dir: str) -> None:
    pin_namespaces(pin_dir, ["net"])
    with pytest.raises(FileExistsError):
        pin_namespaces(pin_dir, ["net"])
    remove_pin_dir(pin_dir)
    with pytest.raises(OSError) as info:
        pin_namespaces(pin_dir, hostname="x" * 80)  # longer than the kernel allows
    assert info.value.errno == errno.EINVAL
    assert not os.path.exists(pin_dir)
    assert mounts_under(os.path.dirname(pin_dir)) == []
    with pytest.raises(ValueError):
        pin_namespaces(pin_dir, ["pid"])
    with pytest.raises(ValueError):
        pin_namespaces(pin_dir, ["net"], hostname="x")


def test_run_in_netns_errors(pin_dir: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_in_netns(str(tmp_path / "missing"), lambda: None)
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OSError) as info:
        run_in_netns(str(plain), lambda: None)
    assert info.value.errno == errno.EINVAL
    pins = pin_namespaces(pin_dir, ["net"])

    def boom() -> None:
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        run_in_netns(pins["net"], boom)


def test_many_pods_pin_and_unpin_quickly(tmp_path: Path) -> None:
    dirs = [str(tmp_path / f"pod{i}") for i in range(50)]
    start = time.perf_counter()
    try:
        for d in dirs:
            pin_namespaces(d, hostname="p")
        pinned = time.perf_counter()
        for d in dirs:
            remove_pin_dir(d)
        done = time.perf_counter()
    finally:
        for d in dirs:
            with contextlib.suppress(OSError):
                remove_pin_dir(d)
    assert mounts_under(str(tmp_path)) == []
    print(f"\npin: {(pinned - start) / 50 * 1000:.2f} ms/pod, unpin: {(done - pinned) / 50 * 1000:.2f} ms/pod")
