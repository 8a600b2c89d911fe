"""One plugin execution: environment, stdin, lookup, timeout and cancellation."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from hawser.network._exec import Attachment, build_env, build_stdin, find_plugin, finish, run_plugin


def attachment() -> Attachment:
    return Attachment(container_id="pod-1", netns="/run/hawser/pod-1/net", ifname="eth0",
                      cni_args=(("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web"),
                                ("K8S_POD_INFRA_CONTAINER_ID", "pod-1")))


def test_env_carries_the_protocol_parameters_and_drops_stray_cni_variables() -> None:
    base = {"PATH": "/usr/sbin:/usr/bin", "CNI_IFNAME": "stale", "CNI_SOMETHING": "x", "LANG": "C"}
    env = build_env("ADD", attachment(), ["/opt/cni/bin", "/usr/lib/cni"], base)
    assert env == {
        "PATH": "/usr/sbin:/usr/bin", "LANG": "C", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "pod-1",
        "CNI_NETNS": "/run/hawser/pod-1/net", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod-1",
    }
    assert build_env("VERSION", None, ["/b"], {}) == {"CNI_COMMAND": "VERSION", "CNI_PATH": "/b"}


def test_stdin_is_the_derived_execution_config() -> None:
    plugin = {"type": "portmap", "name": "ignored", "cniVersion": "0.1.0", "snat": True,
              "capabilities": {"portMappings": True, "bandwidth": True, "dns": False},
              "runtimeConfig": {"admin": 1}}
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "dns": {"servers": ["10.0.0.10"]}, "cgroupPath": "/x"}
    prev = '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}'
    data = json.loads(build_stdin(name="net", cni_version="1.0.0", plugin_raw=json.dumps(plugin),
                                  capabilities=frozenset({"portMappings", "bandwidth"}), capability_args=caps,
                                  prev_result=prev))
    assert data == {
        "type": "portmap", "name": "net", "cniVersion": "1.0.0", "snat": True,
        # only declared capabilities the runtime has values for; "dns" was not declared
        "runtimeConfig": {"admin": 1, "portMappings": caps["portMappings"]},
        "prevResult": json.loads(prev),
    }
    bare = json.loads(build_stdin(name="n", cni_version="0.4.0", plugin_raw='{"type":"bridge","cniVersions":["x"]}',
                                  capabilities=frozenset(), capability_args=caps, prev_result=None))
    assert bare == {"type": "bridge", "name": "n", "cniVersion": "0.4.0"}


def test_find_plugin_searches_dirs_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "bridge").write_text("not executable")
    for d in (first, second):
        (d / "tool").write_text("#!/bin/sh\n")
        (d / "tool").chmod(0o755)
    (second / "bridge").write_text("#!/bin/sh\n")
    (second / "bridge").chmod(0o755)
    dirs = [str(first), str(second)]
    assert find_plugin("tool", dirs) == str(first / "tool")
    assert find_plugin("bridge", dirs) == str(second / "bridge")
    assert find_plugin("missing", dirs) is None


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "plugin"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gone(pid: int) -> bool:
    """Not running: reaped (no /proc entry) or, if orphaned to an init that
    has not reaped it yet, a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_run_plugin_passes_stdin_and_env(tmp_path: Path) -> None:
    path = script(tmp_path, 'echo "$CNI_COMMAND"; cat; echo oops >&2; exit 3\n')
    res = asyncio.run(run_plugin(path, env={"CNI_COMMAND": "DEL"}, stdin=b"{}", timeout=10))
    assert (res.returncode, res.stdout, res.stderr, res.timed_out) == (3, b"DEL\n{}", b"oops\n", False)


def test_timeout_kills_and_reaps_the_plugin_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = script(tmp_path, f'sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; exec sleep 60\n')
    start = time.monotonic()
    res = asyncio.run(run_plugin(path, env={}, stdin=b"", timeout=0.5))
    assert res.timed_out and b"killed after 0.5s" in res.stderr
    assert time.monotonic() - start < 5
    child, plugin = (int(p) for p in pids.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.kill(plugin, 0)  # reaped, not a zombie
    deadline = time.monotonic() + 5
    while not gone(child):
        assert time.monotonic() < deadline, "the plugin's child survived"
        time.sleep(0.05)


def test_cancellation_kills_and_reaps_then_propagates(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = script(tmp_path, f'echo $$ >> {pids}; exec sleep 60\n')

    async def main() -> None:
        task = asyncio.create_task(run_plugin(path, env={}, stdin=b"", timeout=60))
        while not pids.exists() or not pids.read_text().endswith("\n"):  # written, not just created
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    with pytest.raises(ProcessLookupError):
        os.kill(int(pids.read_text()), 0)


def test_a_missing_plugin_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        asyncio.run(run_plugin(str(tmp_path / "none"), env={}, stdin=b"", timeout=1))


def test_finish_completes_cleanup_despite_cancellation() -> None:
    done: list[str] = []

    async def cleanup() -> str:
        await asyncio.sleep(0.2)
        done.append("cleaned")
        return "ok"

    async def worker() -> str:
        return await finish(cleanup())

    async def main() -> None:
        task = asyncio.create_task(worker())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.01)
        task.cancel()  # twice: still not cut short
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done == ["cleaned"]
        assert await finish(cleanup()) == "ok"

    asyncio.run(main())
