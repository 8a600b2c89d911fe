"""``hawser system info`` on the real machine: the tools scripts/setup.sh installs,
the host's cgroups, the store's counts, and a missing tool reported, not raised."""

from __future__ import annotations

import json
from typing import Any

from hawser import __version__
from hawser.cli._system import CNI_PLUGINS, filesystem_of, info_lines
from tests.integration.conftest import Env
from tests.support.images import BuiltImage

TOOL_KEYS = {"path", "status", "version", "error"}


def info(env: Env, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(env.cli(*args, "system", "info", "--format", "json").stdout)
    return report


def test_json_has_stable_keys_and_types(overlay_env: Env) -> None:
    report = info(overlay_env)
    assert set(report) == {"version", "tools", "cni", "host", "storage", "objects", "daemon", "registry"}
    assert report["version"] == __version__
    assert set(report["tools"]) == {"runc", "conmon", "catatonit"}
    for name, tool in report["tools"].items():
        assert set(tool) == TOOL_KEYS
        assert tool["status"] == "ok", tool
        assert name in tool["version"] and tool["error"] is None
    assert list(report["cni"]["plugins"]) == list(CNI_PLUGINS)
    for plugin in report["cni"]["plugins"].values():
        assert set(plugin) == TOOL_KEYS and plugin["status"] == "ok", plugin
        assert plugin["path"].startswith(report["cni"]["bin_dir"] + "/")
    host = report["host"]
    assert isinstance(host["kernel"], str) and host["kernel"]
    assert host["cgroup_version"] in (1, 2)
    assert isinstance(host["cgroup_controllers"], list) and "memory" in host["cgroup_controllers"]
    assert report["storage"] == {"snapshotter": "overlayfs", "backing_filesystem": report["storage"]["backing_filesystem"],
                                 "root": overlay_env.root, "state": overlay_env.state}
    assert isinstance(report["storage"]["backing_filesystem"], str) and report["storage"]["backing_filesystem"]
    assert report["objects"] == {"namespace": "default", "images": 0, "containers": 0, "pods": 0,
                                 "all_namespaces": {"namespaces": 1, "images": 0, "containers": 0, "pods": 0}}
    daemon = report["daemon"]
    assert set(daemon) == {"running", "address", "address_answers", "containerd_address",
                           "containerd_address_answers"}
    assert all(isinstance(daemon[k], bool) for k in ("running", "address_answers", "containerd_address_answers"))
    registry = report["registry"]
    assert registry["config_file"] == overlay_env.config_file and registry["config_file_present"] is True
    assert isinstance(registry["hosts_dir"], str) and isinstance(registry["docker_config"], str)


def test_table_is_grouped_key_value_lines(overlay_env: Env) -> None:
    out = overlay_env.cli("system", "info").stdout
    lines = out.splitlines()
    assert lines[0] == f"Version: {__version__}"
    for group in ("Runtime:", "CNI:", "Host:", "Storage:", "Namespace default:", "All Namespaces (1):", "Daemon:",
                  "Registry:"):
        assert group in lines, out
    assert any(line.startswith(" runc: runc version") for line in lines), out
    assert f" Root Dir: {overlay_env.root}" in lines
    assert lines == info_lines(info(overlay_env))


def test_a_missing_tool_is_reported_missing(overlay_env: Env) -> None:
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write('runc = "/nonexistent/runc"\n')  # the file ends in its [runtime] table
    report = info(overlay_env)
    assert report["tools"]["runc"] == {"path": "/nonexistent/runc", "status": "missing", "version": None,
                                       "error": None}
    assert report["tools"]["conmon"]["status"] == "ok"
    assert " runc: missing (/nonexistent/runc)" in overlay_env.cli("system", "info").stdout.splitlines()


def test_a_missing_cni_bin_dir_reports_every_plugin_missing(overlay_env: Env, tmp_path: Any) -> None:
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write(f'[cni]\nbin_dir = "{tmp_path / "no-cni"}"\n')
    plugins = info(overlay_env)["cni"]["plugins"]
    assert {p["status"] for p in plugins.values()} == {"missing"}


def test_counts_follow_a_pull_in_this_namespace_and_all(overlay_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    overlay_env.cli("pull", "--plain-http", "-q", ref)
    here = info(overlay_env)["objects"]
    assert (here["namespace"], here["images"], here["all_namespaces"]["images"]) == ("default", 1, 1)
    other = info(overlay_env, "-n", "other")["objects"]
    assert (other["namespace"], other["images"], other["all_namespaces"]["images"]) == ("other", 0, 1)
    assert other["all_namespaces"]["namespaces"] == 2


def test_no_daemon_on_the_configured_sockets(overlay_env: Env, tmp_path: Any) -> None:
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write(f'[daemon]\naddress = "{tmp_path / "none.sock"}"\ncontainerd_address = ""\n')
    daemon = info(overlay_env)["daemon"]
    assert daemon == {"running": False, "address": str(tmp_path / "none.sock"), "address_answers": False,
                      "containerd_address": "", "containerd_address_answers": False}


def test_filesystem_of_takes_the_deepest_mount() -> None:
    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              "tmpfs /var/lib tmpfs rw 0 0\n"
              "/dev/sdb1 /var/lib/hawser\\040x xfs rw 0 0\n")
    assert filesystem_of("/var/lib/hawser x/snapshots", mounts) == "xfs"
    assert filesystem_of("/var/lib/hawser", mounts) == "tmpfs"
    assert filesystem_of("/var/library", mounts) == "ext4"
