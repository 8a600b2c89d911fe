"""docker's -v and --mount syntax, and the volume store over a fake container
records store (no root: no container, no driver options)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.volumes import (
    ANONYMOUS_LABEL,
    MountRequest,
    VolumeStore,
    container_mounts,
    parse_mount,
    parse_volume,
    parse_volume_options,
)


@pytest.mark.parametrize(("spec", "want"), [
    ("/data", MountRequest(type="volume", destination="/data")),
    ("/data:ro", MountRequest(type="volume", destination="/data", readonly=True)),
    ("name:/data", MountRequest(type="volume", source="name", destination="/data")),
    ("name:/data:ro,nocopy", MountRequest(type="volume", source="name", destination="/data", readonly=True,
                                          nocopy=True)),
    ("/host/../srv:/d/:rw,rslave", MountRequest(type="bind", source="/srv", destination="/d", propagation="rslave")),
    ("/h:/d:z", MountRequest(type="bind", source="/h", destination="/d")),
])
def test_parse_volume(spec: str, want: MountRequest) -> None:
    assert parse_volume(spec) == want


@pytest.mark.parametrize(("spec", "why"), [
    ("./data:/d", "local volume name"), ("a/b:/d", "local volume name"), ("~/x:/d", "local volume name"),
    ("x:/d", "local volume name"),  # docker's names have two characters at least
    ("name:rel", "absolute"), ("name:/", "'/'"), ("/h:/d:rw,bogus", "mode"), ("/h:/d:nocopy", "nocopy"),
    ("name:/d:rshared", "propagation"), ("a:b:c:d", "use"),
])
def test_parse_volume_refuses(spec: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse_volume(spec)


def test_parse_mount() -> None:
    assert parse_mount("type=bind,src=/h,dst=/d,ro=true,bind-propagation=rshared") == MountRequest(
        type="bind", source="/h", destination="/d", readonly=True, propagation="rshared")
    assert parse_mount("target=/d") == MountRequest(type="volume", destination="/d")
    assert parse_mount("type=volume,source=vv,destination=/d,readonly,volume-nocopy=true,volume-opt=type=tmpfs,"
                       "volume-opt=device=tmpfs,volume-label=a=b") == MountRequest(
        type="volume", source="vv", destination="/d", readonly=True, nocopy=True,
        volume_options={"type": "tmpfs", "device": "tmpfs"}, volume_labels={"a": "b"})
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770,readonly=false") == MountRequest(
        type="tmpfs", destination="/t", tmpfs_size=64 << 20, tmpfs_mode=0o1770)


@pytest.mark.parametrize(("spec", "why"), [
    ("type=bind,src=rel,dst=/d", "absolute"), ("type=bind,dst=/d", "absolute"), ("type=tmpfs,src=x,dst=/t", "source"),
    ("type=volume,src=./v,dst=/d", "local volume name"), ("type=volume,src=v", "target"),
    ("type=volume,dst=/d,bind-propagation=shared", "bind-propagation"), ("type=bind,src=/h,dst=/d,volume-nocopy",
                                                                          "volume-"),
    ("type=volume,dst=/d,tmpfs-size=1m", "tmpfs-"), ("type=tmpfs,dst=/t,tmpfs-mode=9", "octal"),
    ("type=tmpfs,dst=/t,tmpfs-size=-1", "size"), ("type=x,dst=/d", "type"), ("dst=/d,colour=red", "unknown key"),
    ("dst=/d,ro=maybe", "boolean"), ("dst=/d,volume-driver=nfs", "driver"),
])
def test_parse_mount_refuses(spec: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse_mount(spec)


def test_parse_volume_options() -> None:
    assert parse_volume_options(["type=tmpfs,device=tmpfs,o=size=64m,uid=1000"]) == {
        "type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"}
    assert parse_volume_options(["type=none", "device=/srv", "o=bind"]) == {"type": "none", "device": "/srv",
                                                                           "o": "bind"}
    assert parse_volume_options([]) == {}
    for bad in (["size=1m"], ["o=size=1m"], ["type=ext4"]):
        with pytest.raises(InvalidArgument):
            parse_volume_options(bad)


class _Record:
    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config


class _Records:
    """The one method of ContainerRecords the volume store asks."""

    def __init__(self) -> None:
        self.records: list[_Record] = []

    def list(self) -> list[_Record]:
        return list(self.records)


def _store(tmp_path: Path, records: _Records, namespace: str = "default") -> VolumeStore:
    return VolumeStore(root=str(tmp_path / "root"), namespace=namespace, locks_dir=str(tmp_path / "locks"),
                       containers=records)  # type: ignore[arg-type]


def test_store_create_list_get_and_namespaces(tmp_path: Path) -> None:
    records = _Records()
    store = _store(tmp_path, records)
    v = store.create("data", labels={"a": "b"})
    assert v.mountpoint == str(tmp_path / "root" / "volumes" / "default" / "data" / "_data")
    assert os.path.isdir(v.mountpoint)
    assert store.create("data") == v  # idempotent, as docker's
    with pytest.raises(AlreadyExists):
        store.create("data", exist_ok=False)
    anon = store.create(labels={ANONYMOUS_LABEL: ""})
    assert len(anon.name) == 64 and anon.anonymous and not v.anonymous
    assert [x.name for x in store.volumes()] == sorted(["data", anon.name])
    assert store.get("data").to_json()["Labels"] == {"a": "b"}
    with pytest.raises(NotFound):
        store.get("../escape")
    assert _store(tmp_path, records, "other").volumes() == []
    # A create a crash cut short (no metadata yet) is not a volume; the next create finishes it.
    os.makedirs(tmp_path / "root" / "volumes" / "default" / "half" / "_data")
    assert "half" not in [x.name for x in store.volumes()]
    assert store.create("half").name == "half"
    meta = json.loads((tmp_path / "root" / "volumes" / "default" / "half" / "volume.json").read_text())
    assert meta["name"] == "half" and meta["labels"] == {}


def test_store_remove_and_prune(tmp_path: Path) -> None:
    records = _Records()
    store = _store(tmp_path, records)
    for name in ("used", "free", "labelled"):
        store.create(name, labels={"k": "v"} if name == "labelled" else None)
    anon = store.create(labels={ANONYMOUS_LABEL: ""}).name
    records.records.append(_Record("c1", {"mounts": [{"source": "/x", "destination": "/d", "volume": "used"}]}))
    out = dict(store.remove(["used", "free", "nosuch"]))
    assert isinstance(out["used"], FailedPrecondition) and "c1" in str(out["used"])
    assert out["free"] is None and isinstance(out["nosuch"], NotFound)
    assert dict(store.remove(["nosuch"], force=True)) == {"nosuch": None}
    assert [name for name, _ in store.prune()] == [anon]  # anonymous ones only
    assert [name for name, _ in store.prune(all_=True, labels={"k": None})] == ["labelled"]
    assert [x.name for x in store.volumes()] == ["used"]
    # A removal a crash cut short (renamed away, not yet deleted) is swept by the next prune.
    os.makedirs(tmp_path / "root" / "volumes" / "default" / ".removing-x-1234" / "_data")
    store.prune()
    assert os.listdir(tmp_path / "root" / "volumes" / "default") == ["used"]


def test_container_mounts_layout() -> None:
    config = {"mounts": [{"source": "/h", "destination": "/b", "readonly": True, "propagation": "rslave",
                          "volume": ""},
                         {"source": "/r/_data", "destination": "/v", "readonly": False, "volume": "v"}],
              "tmpfs": [{"destination": "/t", "options": []}]}
    assert container_mounts(config) == [
        {"Type": "bind", "Source": "/h", "Destination": "/b", "Mode": "ro", "RW": False, "Propagation": "rslave"},
        {"Type": "volume", "Name": "v", "Source": "/r/_data", "Destination": "/v", "Driver": "local", "Mode": "",
         "RW": True, "Propagation": ""},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True, "Propagation": ""}]
