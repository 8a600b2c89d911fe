"""Fake CNI plugins: real executables (tiny Python scripts) in a tmp bin dir.

Each records its invocation (the CNI_* environment and the config it read on
stdin) as one JSON line in a log file, then behaves as the ``fake`` object of
its config says: answer ADD with the previous result plus one interface and
IP, fail a command with a CNI error object, sleep, or print garbage.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hawser.network import CNINetwork

FAKE_PLUGIN = """\
#!{python} -IS
import json, os, sys, time
cmd = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
conf = json.loads(raw) if raw.strip() else {{}}
with open(os.environ["FAKE_CNI_LOG"], "a") as log:
    log.write(json.dumps({{"plugin": os.path.basename(sys.argv[0]), "pid": os.getpid(),
                          "env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}},
                          "stdin": conf}}) + "\\n")
fake = conf.get("fake", {{}})
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0"]}}))
    sys.exit(0)
if cmd in fake.get("spawn_on", []):
    import subprocess
    child = subprocess.Popen(["sleep", "60"])
    with open(os.environ["FAKE_CNI_LOG"] + ".children", "a") as f:
        f.write(f"{{child.pid}}\\n")
if cmd in fake.get("sleep_on", []):
    time.sleep(fake.get("sleep", 60))
if cmd in fake.get("fail_on", []):
    if fake.get("stderr_only"):
        sys.stderr.write("some log line\\n" + fake.get("msg", "it broke") + "\\n")
    else:
        sys.stderr.write("a log line on stderr\\n")
        print(json.dumps({{"cniVersion": conf.get("cniVersion"), "code": fake.get("code", 100),
                          "msg": fake.get("msg", "fake failure"), "details": fake.get("details", "")}}))
    sys.exit(fake.get("exit", 1))
if cmd == "ADD":
    if "output" in fake:
        sys.stdout.write(fake["output"])
        sys.exit(0)
    result = dict(conf.get("prevResult") or {{}})
    result["cniVersion"] = conf["cniVersion"]
    if "ip" in fake:
        interfaces = result.setdefault("interfaces", [])
        interfaces.append({{"name": fake.get("host_if", "veth-fake"), "mac": "aa:bb:cc:dd:ee:00"}})
        interfaces.append({{"name": os.environ["CNI_IFNAME"], "mac": "aa:bb:cc:dd:ee:01",
                           "sandbox": os.environ["CNI_NETNS"]}})
        ip = {{"address": fake["ip"], "interface": len(interfaces) - 1}}
        if "gateway" in fake:
            ip["gateway"] = fake["gateway"]
        if not conf["cniVersion"].startswith("1."):
            ip["version"] = "6" if ":" in fake["ip"] else "4"
        result.setdefault("ips", []).append(ip)
        result.setdefault("routes", []).append({{"dst": "0.0.0.0/0"}})
    if "dns" in fake:
        result["dns"] = fake["dns"]
    print(json.dumps(result))
"""


@dataclass
class FakeCNI:
    root: Path

    def __post_init__(self) -> None:
        self.conf_dir = self.root / "net.d"
        self.bin_dir = self.root / "bin"
        self.cache_dir = self.root / "cache"
        self.log = self.root / "calls.jsonl"
        self.netns = str(self.root / "netns")  # a plain path: these tests need no real namespace
        self.conf_dir.mkdir()
        self.bin_dir.mkdir()
        for name in ("fake-bridge", "fake-ipam", "fake-portmap", "fake-tuning", "fake-other"):
            self.plugin(name)

    def plugin(self, name: str) -> Path:
        path = self.bin_dir / name
        path.write_text(FAKE_PLUGIN.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    def write(self, filename: str, doc: dict[str, Any] | str) -> Path:
        path = self.conf_dir / filename
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    def conflist(self, plugins: list[dict[str, Any]], *, name: str = "fakenet", version: str = "1.0.0",
                 filename: str = "10-fake.conflist", **extra: Any) -> Path:
        return self.write(filename, {"cniVersion": version, "name": name, "plugins": plugins, **extra})

    def network(self, **kwargs: Any) -> CNINetwork:
        kwargs.setdefault("plugin_timeout", 20.0)
        return CNINetwork(str(self.conf_dir), [str(self.bin_dir)], str(self.cache_dir),
                          env={**os.environ, "FAKE_CNI_LOG": str(self.log)}, **kwargs)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def clear(self) -> None:
        if self.log.exists():
            self.log.unlink()

    def cache_files(self) -> list[str]:
        return sorted(os.listdir(self.cache_dir)) if self.cache_dir.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCNI]:
    yield FakeCNI(tmp_path)


# A chain like the default one: main plugin with IPAM, then a portmap-like meta plugin.
def standard_plugins(**bridge_fake: Any) -> list[dict[str, Any]]:
    return [
        {"type": "fake-bridge", "bridge": "br0", "ipam": {"type": "fake-ipam"},
         "fake": {"ip": "10.22.0.5/24", "gateway": "10.22.0.1", **bridge_fake}},
        {"type": "fake-portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    ]
