"""Write the seed corpora in fuzz/corpus/TARGET/: valid inputs and known tricks.

    python -m tests.fuzz.seeds

Re-run after changing a seed here; crash files from `make fuzz` are copied
into fuzz/corpus/TARGET/ by hand (named crash-*) once fixed.  The suite
replays every file (test_corpus.py)."""

from __future__ import annotations

import json
from pathlib import Path

from cri_api.v1 import api_pb2

from tests.fuzz.test_parsers import CNI_CONF, CNI_CONFLIST, CNI_RESULT, CONFIG, DIGEST, DOCKER_CONFIG, INDEX, MANIFEST
from tests.support.layers import LayerBuilder

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def _layers() -> dict[str, bytes]:
    return {
        "tree": (LayerBuilder().add_dir("etc").add_file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
                 .add_symlink("bin/sh", "busybox").add_hardlink("etc/group", "etc/passwd")
                 .add_file("bin/su", b"x", mode=0o4755).add_char("dev/null", 1, 3).add_fifo("run/fifo").build()),
        "whiteouts": LayerBuilder().add_file("a/b").add_whiteout("a/c").add_opaque("a").add_opaque("").build(),
        "dotdot": LayerBuilder().add_file("../outside/secret", b"pwned").build(),
        "absolute": LayerBuilder().add_file("/etc/x", b"ok").add_file("/../../x", b"pwned").build(),
        "symlink-dir-escape": LayerBuilder().add_symlink("link", "../outside").add_file("link/secret", b"x").build(),
        "symlink-abs-escape": LayerBuilder().add_symlink("link", "/").add_file("link/tmp/x", b"x").build(),
        "hardlink-escape": LayerBuilder().add_hardlink("h", "../outside/secret").build(),
        "hardlink-to-escaping-symlink": LayerBuilder().add_symlink("s", "/etc/shadow").add_hardlink("h", "s").build(),
        "symlink-then-dir": LayerBuilder().add_symlink("d", "/tmp").add_dir("d").add_file("d/x").build(),
        "pax-path": LayerBuilder().add_raw("short", pax={"path": b"../../x"}, force_pax=True).build(),
        "xattrs": LayerBuilder().add_file("f", b"", xattrs={"trusted.overlay.opaque": b"y", "user.k": b"v"}).build(),
        "truncated": LayerBuilder().add_file("f", b"x" * 1000).build()[:700],
        "setgid-dir": LayerBuilder().add_dir("g", mode=0o2775).add_file("g/f").build(),
        "nul-name": LayerBuilder().add_file("a\x00b").build(),
    }


def seeds() -> dict[str, dict[str, bytes]]:
    pod = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="web", namespace="ns", uid="u1"), hostname="web",
        log_directory="/var/log/pods/ns_web_u1", port_mappings=[api_pb2.PortMapping(container_port=80, host_port=8080)],
        dns_config=api_pb2.DNSConfig(servers=["10.0.0.10"]),
        linux=api_pb2.LinuxPodSandboxConfig(sysctls={"net.ipv4.ip_forward": "1"}, security_context=api_pb2.
                                            LinuxSandboxSecurityContext(namespace_options=api_pb2.NamespaceOption(
                                                network=api_pb2.NODE, pid=api_pb2.CONTAINER))))
    ctr = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app"), image=api_pb2.ImageSpec(image="127.0.0.1:5000/app:v1"),
        command=["/bin/sh"], args=["-c", "true"], envs=[api_pb2.KeyValue(key="A", value="1")],
        log_path="app/0.log", mounts=[api_pb2.Mount(container_path="/data", host_path="/srv/data", propagation=2)],
        devices=[api_pb2.Device(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rwm")],
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(cpu_quota=50000, memory_limit_in_bytes=1 << 28),
            security_context=api_pb2.LinuxContainerSecurityContext(
                run_as_user=api_pb2.Int64Value(value=1000), seccomp=api_pb2.SecurityProfile(
                    profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/etc/seccomp/app.json"),
                namespace_options=api_pb2.NamespaceOption(pid=api_pb2.TARGET, target_id="c1"))))
    escape = api_pb2.ContainerConfig()
    escape.CopyFrom(ctr)
    escape.log_path = "../../../../etc/cron.d/x"
    escape.mounts.add(container_path="relative", host_path="/srv/../etc")
    return {
        "reference": {"short": b"busybox", "full": b"127.0.0.1:5000/ns/app:v1@" + DIGEST.encode(),
                      "ipv6": b"[::1]:5000/app", "upper": b"Docker.io/Library/Busybox", "legacy": b"index.docker.io/a",
                      "bad-tag": b"app:" + b"t" * 200, "digest-only": b"app@sha256:abc"},
        "manifest": {"manifest": json.dumps(MANIFEST).encode(), "index": json.dumps(INDEX).encode(),
                     "config": json.dumps(CONFIG).encode(), "schema1": b'{"schemaVersion": 1, "fsLayers": []}',
                     "docker-list": json.dumps({**INDEX, "mediaType":
                                                "application/vnd.docker.distribution.manifest.list.v2+json"}).encode(),
                     "nan": b'{"schemaVersion": NaN}', "deep": b"[" * 5000 + b"]" * 5000},
        "config": {"full": b'root = "/var/lib/hawser"\nsnapshotter = "native"\n[registry]\nmax_concurrent_downloads = 4'
                           b'\nstall_timeout = 10.5\n[gc]\ngrace_period = 1\n[runtime]\nrunc = "/usr/bin/runc"\n',
                   "unknown": b"[registry]\nmirrors = 1\n", "types": b'snapshotter = 1\n[gc]\ngrace_period = "x"\n',
                   "latin1": b'root = "/var/lib/\xe9"\n'},
        "hosts": {"mirrors": b'server = "https://registry-1.docker.io"\n[host."https://mirror.example"]\n'
                             b'capabilities = ["pull", "resolve"]\nca = "ca.crt"\nskip_verify = false\n'
                             b'dial_timeout = "3s"\n[host."https://mirror.example".header]\nX-Key = ["a", "b"]\n',
                  "bad-url": b'[host."ftp://x"]\n[host."https://u@h/?q"]\n', "ca-escape": b'ca = "../../etc/shadow"\n',
                  "latin1": b'server = "https://r\xe9gistry"\n'},
        "challenge": {"bearer": b'Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"',
                      "two": b'Basic realm="r", Bearer realm="x"\nNegotiate abc==',
                      "quotes": b'Bearer realm="a\\"b,c",, ,error="insufficient_scope"', "junk": b'=,"\\'},
        "docker_config": {"auths": json.dumps(DOCKER_CONFIG).encode(), "empty": b"{}", "deep": b"[" * 5000 + b"]" * 5000,
                          "crash-bracket-key": b'{"auths": {"https://[x": {"auth": "eDp5"}}}',
                          "bad-auth": b'{"auths": {"a": {"auth": "!!!"}, "b": 5}}'},
        "challenge_client": {"bearer": b'Bearer realm="https://auth.test/token",service="registry.test"',
                             "basic": b'Basic realm="r"', "ipv6-realm": b'Bearer realm="https://[::1]:5000/token"',
                             "crash-unbalanced-bracket": b'Bearer realm="https://[x/token"',
                             "crash-nul": b'Bearer realm="https://a\x00b/token"', "none": b""},
        "cni": {"result": json.dumps(CNI_RESULT).encode(), "conflist": json.dumps(CNI_CONFLIST).encode(),
                "conf": json.dumps(CNI_CONF).encode(), "bad-ip": b'{"cniVersion": "1.0.0", "ips": [{"address": "x"}]}',
                "bad-iface": b'{"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": 99}]}',
                "deep": b"[" * 5000 + b"]" * 5000},
        "pod_sandbox": {"pod": pod.SerializeToString(), "empty": b"",
                        "bad-mode": api_pb2.PodSandboxConfig(metadata=pod.metadata, linux=api_pb2.LinuxPodSandboxConfig(
                            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=api_pb2.
                                                                                 NamespaceOption(network=7))))
                        .SerializeToString()},
        "container": {"container": ctr.SerializeToString(), "escape": escape.SerializeToString(), "empty": b""},
        "layer": _layers(),
        "layer_overlay": _layers(),
    }


def main() -> None:
    for target, files in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
