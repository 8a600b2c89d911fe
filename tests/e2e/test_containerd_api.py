"""containerd's API on hawserd's second socket, driven by Debian's real ``ctr``:
version, introspection, namespaces (issue 13, its first services)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import grpc
import pytest

from hawser import __version__
from tests.support.hawserd import Hawserd

CTR = shutil.which("ctr") or "/usr/bin/ctr"


def ctr(hawserd: Hawserd, *args: str, namespace: str = "default", check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_ctr_is_installed() -> None:
    # setup.sh installs containerd for its ctr; the API tests below fail, never skip, without it.
    assert subprocess.run([CTR, "--version"], capture_output=True, text=True, check=True).stdout.startswith("ctr ")


def test_version_answers_hawsers(hawserd: Hawserd) -> None:
    out = ctr(hawserd, "version").stdout
    server = out.split("Server:", 1)[1]
    assert f"Version:  {__version__}" in server and f"Revision: hawser-{__version__}" in server
    store_id = (hawserd.root / "store-id").read_text().strip()
    assert f"UUID: {uuid.UUID(hex=store_id)}" in server


def test_plugins_lists_hawsers_parts(hawserd: Hawserd) -> None:
    rows = [line.split() for line in ctr(hawserd, "plugins", "ls").stdout.splitlines()[1:]]
    listed = {(row[0], row[1]): row[-1] for row in rows}
    assert listed[("io.containerd.snapshotter.v1", "overlayfs")] == "ok"
    assert listed[("io.containerd.content.v1", "content")] == "ok"
    for service in ("introspection", "namespaces", "version", "cri"):
        assert listed[("io.containerd.grpc.v1", service)] == "ok"
    # ctr's filter syntax reaches the server.
    only = ctr(hawserd, "plugins", "ls", "type==io.containerd.snapshotter.v1").stdout.splitlines()[1:]
    assert [row.split()[1] for row in only] == ["overlayfs"]
    detailed = ctr(hawserd, "plugins", "ls", "-d", "id==overlayfs").stdout.split()
    assert detailed[detailed.index("root") + 1] == f"{hawserd.root}/snapshots/overlayfs"


def test_namespaces_create_list_label_remove(hawserd: Hawserd) -> None:
    # The CRI's namespace is there from the start, as with containerd's CRI plugin.
    assert "k8s.io" in ctr(hawserd, "namespaces", "ls", "-q").stdout.split()
    ctr(hawserd, "namespaces", "create", "team-a", "owner=alice", "tier=web")
    listed = ctr(hawserd, "namespaces", "ls").stdout
    assert any(line.split()[:2] == ["team-a", "owner=alice,tier=web"] for line in listed.splitlines())
    ctr(hawserd, "namespaces", "label", "team-a", "owner=bob", "tier=")
    rows = [line.split() for line in ctr(hawserd, "namespaces", "ls").stdout.splitlines()]
    assert ["team-a", "owner=bob"] in rows
    assert "team-a" in ctr(hawserd, "namespaces", "ls", "-q").stdout.split()
    again = ctr(hawserd, "namespaces", "create", "team-a", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = ctr(hawserd, "namespaces", "create", "Not Valid", check=False)
    assert bad.returncode != 0 and "invalid" in bad.stderr
    ctr(hawserd, "namespaces", "rm", "team-a")
    assert "team-a" not in ctr(hawserd, "namespaces", "ls", "-q").stdout.split()
    # ctr takes NOT_FOUND for done; the code itself is containerd's.
    from hawser.containerd._api.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc

    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = namespace_pb2_grpc.NamespacesStub(channel)
        with pytest.raises(grpc.RpcError) as gone:
            stub.Delete(namespace_pb2.DeleteNamespaceRequest(name="team-a"))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as missing:
            stub.Get(namespace_pb2.GetNamespaceRequest(name="team-a"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_a_namespace_in_use_is_not_removed(hawserd: Hawserd) -> None:
    """hawser's store holds the namespace's records: one with an image is refused, as containerd refuses it."""
    from hawser.metadata import Metadata
    from hawser.oci import Descriptor, Digest

    md = Metadata(str(hawserd.root / "metadata.db"))
    try:
        md.images.create("127.0.0.1/x/y:1", Descriptor(media_type="application/vnd.oci.image.manifest.v1+json",
                                                        digest=Digest.of(b"{}"), size=2), namespace="busy")
    finally:
        md.close()
    proc = ctr(hawserd, "namespaces", "rm", "busy", check=False)
    assert proc.returncode != 0 and "must be empty, but it still has images" in proc.stderr
    assert "failed precondition" in proc.stderr  # containerd's code, as ctr names it
    assert "busy" in ctr(hawserd, "namespaces", "ls", "-q").stdout.split()
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving


def test_the_cri_is_served_on_containerds_socket_too(hawserd: Hawserd) -> None:
    from cri_api.v1 import api_pb2, api_pb2_grpc

    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        version = api_pb2_grpc.RuntimeServiceStub(channel).Version(api_pb2.VersionRequest())
    assert version.runtime_name == "hawser"


@pytest.mark.parametrize("mode", ["0o660"])
def test_the_socket_is_root_and_group_only(hawserd: Hawserd, mode: str) -> None:
    import os
    import stat

    st = os.stat(hawserd.containerd_address)
    assert stat.S_ISSOCK(st.st_mode) and oct(stat.S_IMODE(st.st_mode)) == mode and st.st_uid == 0
