"""A real store in a temporary directory (local content store, SQLite records,
the native snapshotter) and a fake host: mounts, processes, runc, namespaces
and cgroups are whatever a test says, and every change is logged in ``calls``."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hawser.check import MountPoint, Process, Report, check_store
from hawser.config import Config, GCConfig, RuntimeConfig
from hawser.content import LocalStore
from hawser.host import CgroupLayout
from hawser.images._chain import chain_ids
from hawser.images._labels import config_labels, manifest_labels
from hawser.metadata import Container, Metadata, SandboxRecord
from hawser.oci import Digest
from hawser.snapshots import NativeSnapshotter
from hawser.store import LEASE_OWNER_PID, Store
from tests.support.images import BuiltImage, build_image

CGROUP_PARENT = "/hawser-unit"
OWNER = LEASE_OWNER_PID


@dataclass
class FakeHost:
    root: str
    mount_table: list[MountPoint] = field(default_factory=list)
    conmons: list[Process] = field(default_factory=list)
    namespaces: dict[str, str] = field(default_factory=dict)  # pin path -> kind
    runc: dict[str, str] = field(default_factory=dict)  # container id -> status
    dead_owners: set[str] = field(default_factory=set)
    pid_namespaces_alive: bool = True
    fail_unmount: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def mounts(self) -> list[MountPoint]:
        return list(self.mount_table)

    def unmount(self, path: str) -> None:
        if path in self.fail_unmount:
            raise OSError(16, "Device or resource busy", path)
        self.calls.append(("unmount", path))
        self.mount_table = [m for m in self.mount_table if m.path != path]

    def processes(self, name: str) -> list[Process]:
        return list(self.conmons) if name == "conmon" else []

    def alive(self, process: Process) -> bool:
        return process in self.conmons

    def kill(self, process: Process) -> None:
        self.calls.append(("kill", str(process.pid)))
        self.conmons.remove(process)

    def wait_exit(self, process: Process, timeout: float) -> bool:
        return process not in self.conmons

    def lease_owner_alive(self, labels: Mapping[str, str]) -> bool:
        return labels.get(OWNER, "") not in self.dead_owners

    def namespace_kind(self, path: str) -> str | None:
        return self.namespaces.get(path)

    def remove_pin_dir(self, path: str) -> None:
        self.calls.append(("remove_pin_dir", path))
        self.namespaces = {p: k for p, k in self.namespaces.items() if not p.startswith(path)}
        self.mount_table = [m for m in self.mount_table if m.path != path and not m.path.startswith(path + "/")]
        shutil.rmtree(path, ignore_errors=True)

    def pid_namespace_alive(self, holder: int, init: int, marker: str) -> bool:
        return self.pid_namespaces_alive

    def runc_status(self, runc_root: str, container_id: str) -> str | None:
        return self.runc.get(container_id)

    def runc_delete(self, runc_root: str, container_id: str) -> None:
        self.calls.append(("runc_delete", container_id))
        self.runc.pop(container_id, None)
        shutil.rmtree(os.path.join(runc_root, container_id), ignore_errors=True)

    def remove_container(self, store: Store, record: Container) -> None:
        self.calls.append(("remove_container", record.id))
        store.metadata.containers.delete(record.id, namespace=record.namespace)

    def cgroup_layout(self) -> CgroupLayout:
        base = os.path.join(self.root, "cgroup")
        return CgroupLayout(version=1, mounts={"memory": f"{base}/memory", "pids": f"{base}/pids",
                                               "": f"{base}/unified"})

    def cgroup_dirs(self, cgroup: str) -> list[str]:
        return self.cgroup_layout().directories(cgroup)


@dataclass
class StoredImage:
    name: str
    built: BuiltImage
    chains: list[Digest]

    @property
    def top(self) -> str:
        return str(self.chains[-1])

    @property
    def layer_digests(self) -> list[Digest]:
        return [d.digest for d, _ in self.built.layers]


def tar_of(files: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class Node:
    tmp: Path
    store: Store
    host: FakeHost

    @property
    def config(self) -> Config:
        return self.store.config

    @property
    def md(self) -> Metadata:
        return self.store.metadata

    @property
    def state(self) -> str:
        return self.store.config.state

    def check(self, *, repair: bool = False) -> Report:
        return check_store(self.store, repair=repair, host=self.host)

    def write_blob(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        with self.store.content.writer(f"test-{digest.encoded}", expected=digest, total=len(data)) as w:
            w.write(data)
            w.commit()
        return digest

    def blob_path(self, digest: str) -> str:
        content = self.store.content
        assert isinstance(content, LocalStore)
        return content.path(Digest(digest))

    def corrupt(self, digest: str) -> None:
        path = self.blob_path(digest)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))

    def add_image(self, name: str = "127.0.0.1/test/img:1", *, layers: int = 2, tag: str = "") -> StoredImage:
        """What a pull leaves: blobs and their records with GC labels, the unpacked
        chain (empty trees: the check never reads them), the image record."""
        tars = [tar_of({f"file-{tag}{i}": f"layer {tag}{i}".encode()}) for i in range(layers)]
        built = build_image(tars)
        chains = chain_ids([Digest(d) for d in built.diff_ids])
        snapshotter = self.store.snapshotter
        for i, (desc, blob) in enumerate(built.layers):
            self.write_blob(blob)
            self.md.blobs.record(str(desc.digest), desc.size, {})
            if not _exists(snapshotter, str(chains[i])):
                key = f"extract-{os.urandom(4).hex()}"
                snapshotter.prepare(key, str(chains[i - 1]) if i else "")
                snapshotter.commit(str(chains[i]), key)
        self.write_blob(built.config)
        self.md.blobs.record(str(built.config_desc.digest), len(built.config),
                            config_labels(snapshotter.name, chains[-1] if chains else None))
        self.write_blob(built.manifest)
        from hawser.oci import parse_manifest

        manifest = parse_manifest(built.manifest, built.manifest_desc.media_type)
        self.md.blobs.record(str(built.manifest_desc.digest), len(built.manifest), manifest_labels(manifest))
        self.md.images.put(name, built.manifest_desc)
        return StoredImage(name=name, built=built, chains=chains)

    def add_container(self, image: StoredImage, *, id_: str | None = None, labels: dict[str, str] | None = None,
                      snapshot: bool = True) -> Container:
        id_ = id_ or os.urandom(32).hex()
        key = f"container-{id_}"
        if snapshot:
            self.store.snapshotter.prepare(key, image.top)
        record = Container(namespace="default", id=id_, name=f"c-{id_[:6]}", image=image.name,
                           image_id=str(image.built.config_desc.digest), snapshotter=self.store.snapshotter.name,
                           snapshot_key=key, config={"cgroups_path": f"{CGROUP_PARENT}/{id_}"},
                           labels=labels or {}, created_at=time.time())
        self.md.containers.create(record)
        os.makedirs(os.path.join(self.state, "containers", id_, "rootfs"))
        return record

    def add_sandbox(self, *, id_: str | None = None, ready: bool = True, status: dict[str, str] | None = None
                    ) -> SandboxRecord:
        id_ = id_ or os.urandom(32).hex()
        record = SandboxRecord(namespace="default", id=id_, name=f"pod-{id_[:6]}", config={}, labels={},
                               state="ready" if ready else "notready",
                               status=status or {"cgroup_parent": f"{CGROUP_PARENT}/pod-{id_[:12]}"},
                               created_at=time.time())
        self.md.sandboxes.create(record)
        return record

    def mount(self, path: str, fstype: str = "overlay") -> None:
        os.makedirs(path, exist_ok=True)
        self.host.mount_table.append(MountPoint(path=path, fstype=fstype, source=fstype))

    def make_cgroup(self, cgroup: str) -> list[str]:
        dirs = self.host.cgroup_dirs(cgroup)
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        return dirs

    def leased(self, kind: str, key: str, *, owner: str = "") -> str:
        lease = self.md.leases.create(ttl=3600, labels={OWNER: owner} if owner else {})
        self.md.leases.add_resource(lease, kind, key)
        return lease


def _exists(snapshotter: NativeSnapshotter, key: str) -> bool:
    try:
        snapshotter.stat(key)
        return True
    except Exception:
        return False


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    root, state = tmp_path / "root", tmp_path / "state"
    config = Config(root=str(root), state=str(state), snapshotter="native", gc=GCConfig(grace_period=0),
                    runtime=RuntimeConfig(cgroup_parent=CGROUP_PARENT))
    os.makedirs(state)
    store = Store(config=config, content=LocalStore(str(root / "content")),
                  metadata=Metadata(str(root / "metadata.db")),
                  snapshotter=NativeSnapshotter(str(root / "snapshots" / "native")))
    yield Node(tmp=tmp_path, store=store, host=FakeHost(root=str(tmp_path)))
    store.close()


def kinds(report: Report) -> list[tuple[str, str]]:
    return sorted((f.kind, f.subject) for f in report.findings)
