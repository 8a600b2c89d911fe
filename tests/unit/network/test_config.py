"""CNI config files: parsing, precedence, invalid files, change detection."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.network import default_conflist, load_file, parse_network_config, write_default_conflist
from hawser.network._config import ConfigDir

BRIDGE = {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}}
PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}}


def conflist(name: str = "net", version: str = "1.0.0", plugins: list[object] | None = None) -> str:
    return json.dumps({"cniVersion": version, "name": name, "plugins": plugins or [BRIDGE, PORTMAP]})


def test_conflist_is_parsed() -> None:
    net = parse_network_config(conflist(), source="x.conflist")
    assert (net.name, net.cni_version, net.disable_check, net.source) == ("net", "1.0.0", False, "x.conflist")
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0].ipam_type == "host-local"
    # only capabilities set to true count
    assert net.plugins[1].capabilities == frozenset({"portMappings"})
    assert json.loads(net.plugins[0].raw) == BRIDGE
    assert json.loads(net.raw)["plugins"] == [BRIDGE, PORTMAP]
    assert net.supports_check


@pytest.mark.parametrize("version, check", [("0.4.0", True), ("0.3.1", False), ("0.3.0", False)])
def test_older_spec_versions(version: str, check: bool) -> None:
    net = parse_network_config(conflist(version=version))
    assert net.cni_version == version
    assert net.supports_check is check


def test_single_plugin_conf_is_wrapped() -> None:
    doc = {"cniVersion": "0.4.0", "name": "single", **BRIDGE}
    net = parse_network_config(json.dumps(doc), single=True)
    assert (net.name, net.cni_version, [p.type for p in net.plugins]) == ("single", "0.4.0", ["bridge"])
    assert json.loads(net.plugins[0].raw) == doc


def test_cni_versions_list_picks_newest_supported() -> None:
    doc = {"cniVersions": ["0.3.1", "1.0.0", "1.1.0", "2.0.0"], "name": "n", "plugins": [BRIDGE]}
    assert parse_network_config(json.dumps(doc)).cni_version == "1.1.0"
    # spec 1.1: cniVersion for older runtimes, cniVersions for newer ones; the highest of both wins
    doc = {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": "n", "plugins": [BRIDGE]}
    net = parse_network_config(json.dumps(doc))
    assert net.cni_version == "1.1.0" and net.supports_status_and_gc
    doc = {"cniVersion": "0.4.0", "cniVersions": ["9.9.9"], "name": "n", "plugins": [BRIDGE]}
    assert parse_network_config(json.dumps(doc)).cni_version == "0.4.0"


@pytest.mark.parametrize("version, status_and_gc", [("1.1.0", True), ("1.0.0", False), ("0.4.0", False)])
def test_status_and_gc_arrive_with_spec_1_1(version: str, status_and_gc: bool) -> None:
    assert parse_network_config(conflist(version=version)).supports_status_and_gc is status_and_gc


def test_disable_gc() -> None:
    doc = {"cniVersion": "1.1.0", "name": "n", "disableGC": True, "plugins": [BRIDGE]}
    net = parse_network_config(json.dumps(doc))
    assert net.disable_gc and json.loads(net.raw)["disableGC"] is True
    assert parse_network_config(json.dumps({**doc, "disableGC": "false"})).disable_gc is False
    # left out of the normalized form when unset: entries cached before keep their exact text
    assert "disableGC" not in json.loads(parse_network_config(conflist()).raw)
    with pytest.raises(InvalidArgument, match="disableGC is not a boolean"):
        parse_network_config(json.dumps({**doc, "disableGC": 1}))


def test_disable_check_string_form() -> None:
    doc = {"cniVersion": "1.0.0", "name": "n", "disableCheck": "true", "plugins": [BRIDGE]}
    assert parse_network_config(json.dumps(doc)).disable_check


@pytest.mark.parametrize("text, single, why", [
    ("{not json", False, "not valid JSON"),
    ("[]", False, "not a JSON object"),
    (json.dumps({"cniVersion": "1.0.0", "plugins": [BRIDGE]}), False, "network name"),
    (json.dumps({"cniVersion": "1.0.0", "name": "-bad", "plugins": [BRIDGE]}), False, "network name"),
    (json.dumps({"cniVersion": "1.2.0", "name": "n", "plugins": [BRIDGE]}), False, "not supported"),
    (json.dumps({"cniVersions": "1.1.0", "name": "n", "plugins": [BRIDGE]}), False, "not a list of strings"),
    (json.dumps({"cniVersion": "0.2.0", "name": "n", "plugins": [BRIDGE]}), False, "not supported"),
    (json.dumps({"name": "n", "plugins": [BRIDGE]}), False, "cniVersion is missing"),
    (json.dumps({"cniVersions": ["2.0.0"], "name": "n", "plugins": [BRIDGE]}), False, "none of cniVersions"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": []}), False, "missing or empty"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}), False, "no \"type\""),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../../bin/sh"}]}), False,
     "not a plugin name"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x", "capabilities": ["a"]}]}), False,
     "capabilities"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x", "ipam": "host-local"}]}), False,
     "ipam is not an object"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "x", "ipam": {"type": "/x"}}]}), False,
     "ipam type"),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "disableCheck": 3, "plugins": [BRIDGE]}), False, "disableCheck"),
    (conflist(), True, "rename it to .conflist"),
])
def test_invalid_configs_say_why(text: str, single: bool, why: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_network_config(text, source="f.conf", single=single)
    assert why in str(info.value)
    assert "f.conf" in str(info.value)


def test_load_file_by_extension(tmp_path: Path) -> None:
    (tmp_path / "a.conflist").write_text(conflist("a"))
    (tmp_path / "b.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "b", **BRIDGE}))
    (tmp_path / "c.json").write_text(json.dumps({"cniVersion": "1.0.0", "name": "c", **BRIDGE}))
    (tmp_path / "d.txt").write_text(conflist("d"))
    assert load_file(str(tmp_path / "a.conflist")).name == "a"
    assert load_file(str(tmp_path / "b.conf")).name == "b"
    assert load_file(str(tmp_path / "c.json")).name == "c"
    with pytest.raises(InvalidArgument, match="unknown extension"):
        load_file(str(tmp_path / "d.txt"))


def test_lexically_first_valid_file_wins_and_invalid_ones_are_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "00-broken.conflist").write_text("{")
    (tmp_path / "05-old.conflist").write_text(conflist("old", version="0.2.0"))
    (tmp_path / "10-good.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "good", **BRIDGE}))
    (tmp_path / "20-later.conflist").write_text(conflist("later"))
    (tmp_path / ".01-hidden.conflist").write_text(conflist("hidden"))
    (tmp_path / "03-notes.txt").write_text("ignored")
    with caplog.at_level(logging.INFO, logger="hawser.network"):
        snap = ConfigDir(str(tmp_path)).snapshot()
    assert snap.network is not None and snap.network.name == "good"
    assert [name for name, _ in snap.skipped] == ["00-broken.conflist", "05-old.conflist"]
    assert "not valid JSON" in snap.skipped[0][1]
    assert "00-broken.conflist" in caplog.text and "05-old.conflist" in caplog.text
    assert "hidden" not in caplog.text


def test_snapshot_follows_new_edited_and_removed_files(tmp_path: Path) -> None:
    configs = ConfigDir(str(tmp_path))
    assert configs.snapshot().network is None
    path = tmp_path / "50-a.conflist"
    path.write_text(conflist("a"))
    assert configs.snapshot().network.name == "a"  # type: ignore[union-attr]
    first = configs.snapshot()
    assert configs.snapshot() is first  # unchanged dir: served from memory
    # an in-place edit changes neither the dir nor (maybe) the size: mtime and size are checked
    path.write_text(conflist("b"))
    os.utime(path, ns=(1, 1))
    assert configs.snapshot().network.name == "b"  # type: ignore[union-attr]
    (tmp_path / "10-first.conflist").write_text(conflist("first"))
    assert configs.snapshot().network.name == "first"  # type: ignore[union-attr]
    (tmp_path / "10-first.conflist").unlink()
    path.unlink()
    snap = configs.snapshot()
    assert snap.network is None and snap.skipped == () and snap.error == ""


def test_missing_conf_dir_is_a_snapshot_with_an_error(tmp_path: Path) -> None:
    snap = ConfigDir(str(tmp_path / "nope")).snapshot()
    assert snap.network is None
    assert "cannot read" in snap.error


def test_default_conflist_is_a_valid_network() -> None:
    doc = default_conflist()
    net = parse_network_config(json.dumps(doc))
    assert net.name == "hawser"
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    bridge = doc["plugins"][0]
    assert bridge["bridge"] == "hawser0" and bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}
    assert net.plugins[1].capabilities == frozenset({"portMappings"})
    with pytest.raises(InvalidArgument):
        default_conflist(subnet="10.88.0.1/16")
    with pytest.raises(InvalidArgument):
        default_conflist(bridge="much-too-long-bridge")


def test_write_default_conflist_only_when_no_config_exists(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    path = write_default_conflist(str(conf_dir), subnet="10.99.0.0/16")
    assert path == str(conf_dir / "10-hawser.conflist")
    assert load_file(path).name == "hawser"
    assert json.loads(Path(path).read_text())["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.99.0.0/16"}]]
    assert os.listdir(conf_dir) == ["10-hawser.conflist"]  # no temporary left behind
    assert write_default_conflist(str(conf_dir)) is None
    other = tmp_path / "other"
    other.mkdir()
    (other / "99-admin.conf").write_text("{ broken, but the admin's")
    assert write_default_conflist(str(other)) is None
    assert os.listdir(other) == ["99-admin.conf"]
