"""Whole `hawser pull`s through a fault-injecting proxy in front of a real
docker-registry: slow drips, wrong Content-Lengths, a token that expires
mid-pull, 429 with Retry-After, mirrors that are down.

Each pull either succeeds (retry, resume, token refresh, fallback) or fails
with one line naming the cause; either way the store is left consistent (no
partial blob recorded, ingests resumable, no active snapshot or lease left),
and the next pull succeeds and the image runs.
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_images import USERS
from tests.integration.conftest import Env, one_line
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import busybox_layers
from tests.support.registry_faults import (
    Action,
    Close,
    Cut,
    Drip,
    Fault,
    RegistryFaultProxy,
    Reset,
    Status,
    WrongBody,
    WrongLength,
)
from tests.support.registry_fixtures import Registry
from tests.support.registry_server import RegistryHandle, free_port, start_registry

from hawser.images import ImageService
from hawser.registry import Credentials, RegistryClient, RegistryOptions
from hawser.snapshots import Kind

pytestmark = pytest.mark.integration

STALL = 1.0  # the stall timeout these pulls run with, seconds
BIG = 300_000  # bytes of the big layer sent before a drip starts


@pytest.fixture
def env(overlay_env: Env) -> Env:
    """A store of its own, with a short stall timeout, two retries and a hosts.toml directory."""
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write(f'[registry]\nstall_timeout = {STALL}\nmax_retries = 2\nconfig_path = "{certs_d(overlay_env)}"\n')
    return overlay_env


def certs_d(env: Env) -> Path:
    return Path(env.root).parent / "certs.d"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[RegistryFaultProxy]:
    with RegistryFaultProxy(registry.host) as p:
        yield p


def pull(env: Env, ref: str, *, plain_http: bool = True) -> subprocess.CompletedProcess[str]:
    return env.cli("pull", *(["--plain-http"] if plain_http else []), ref, check=False)


def big_layer(image: BuiltImage) -> str:
    """The path part that names the image's big layer (busybox, about 1 MB)."""
    desc = max(image.layers, key=lambda layer: layer[0].size)[0]
    return f"/blobs/{desc.digest}"


def check_store(env: Env, image: BuiltImage, *, pulled: bool) -> dict[str, int]:
    """The store is consistent; returns the ingests left behind (digest -> offset)."""
    blobs = {str(d.digest): data for d, data in image.layers}
    blobs[str(image.config_desc.digest)] = image.config
    blobs[str(image.manifest_desc.digest)] = image.manifest
    store = env.store()
    try:
        assert bool(ImageService(store).list_images()) == pulled
        for info in store.content.walk():
            assert store.content.verify(info.digest), f"{info.digest} is corrupt"
        for record in store.metadata.blobs.list(namespace=store.namespace):
            store.content.info(record.digest)  # recorded only once on disk
        ingests = {}
        for status in store.content.list_statuses():
            # Resumable: what is there is the start of the blob, nothing else.
            with open(os.path.join(store.content._ingest_path(status.ref), "data"), "rb") as f:
                assert f.read() == blobs[str(status.expected)][:status.offset], status
            ingests[str(status.expected)] = status.offset
        snapshots = list(store.snapshotter.walk())
        assert [s.key for s in snapshots if s.kind is not Kind.COMMITTED] == []
        assert len(os.listdir(os.path.join(store.snapshotter.root, "snapshots"))) == len(snapshots)
        assert store.metadata.leases.list(namespace=store.namespace) == []
    finally:
        store.close()
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert [line for line in f if env.root in line] == []
    return ingests


def pull_and_run(env: Env, ref: str, image: BuiltImage, *, plain_http: bool = True) -> None:
    """The pull succeeds, leaves nothing half done, and the image runs."""
    proc = pull(env, ref, plain_http=plain_http)
    assert proc.returncode == 0, proc.stderr
    assert check_store(env, image, pulled=True) == {}
    env.cli("run", "--rm", ref, "true")
    assert env.cli("ps", "-a", "-q").stdout.strip() == ""


# --- slow drips -------------------------------------------------------------------


@pytest.mark.parametrize(("drip", "says"), [
    (Drip(chunk=10, interval=0.1, after=BIG), "sent only"),  # 100 B/s: never silent, far too slow
    (Drip(chunk=1000, interval=3 * STALL, after=BIG), f"sent nothing for {STALL:g}s"),
], ids=["trickle", "silence"])
def test_slow_drip_is_a_stall_and_the_retry_resumes(env: Env, proxy: RegistryFaultProxy,
                                                    busybox: tuple[str, BuiltImage], drip: Drip, says: str) -> None:
    _, image = busybox
    ref = f"{proxy.host}/test/busybox:latest"
    layer = big_layer(image)
    proxy.add(Fault(layer, drip, attempts={1}))
    started = time.monotonic()
    line = one_line(pull(env, ref))
    assert time.monotonic() - started < 15
    assert "stall timeout" in line and says in line and proxy.host in line, line
    ingests = check_store(env, image, pulled=False)
    kept = ingests[layer.rsplit("/", 1)[1]]
    assert kept >= BIG  # what arrived is kept for the retry
    pull_and_run(env, ref, image)
    retry = proxy.requests(layer)[-1]
    assert retry.attempt == 2 and retry.range == f"bytes={kept}-"


def test_slow_but_steady_drip_completes(env: Env, proxy: RegistryFaultProxy,
                                        busybox: tuple[str, BuiltImage]) -> None:
    """8 KiB every 50 ms is slow, but well above the stall rate: no error."""
    _, image = busybox
    proxy.add(Fault(big_layer(image), Drip(chunk=8192, interval=0.05, after=1_000_000)))
    pull_and_run(env, f"{proxy.host}/test/busybox:latest", image)
    assert proxy.requests(big_layer(image))[0].action == "Drip"


# --- wrong Content-Length -------------------------------------------------------------


@pytest.mark.parametrize(("target", "action", "says"), [
    # (which answer, what is wrong with it, what the pull's one line says; None: the pull copes)
    pytest.param("layer", WrongLength(-100), "bytes (its Content-Length), the descriptor says", id="layer-declared-shorter"),
    pytest.param("layer", WrongLength(+100), "bytes (its Content-Length), the descriptor says", id="layer-declared-longer"),
    pytest.param("layer", WrongBody(+1000, chunked=True), "sent more than", id="layer-chunked-longer"),
    pytest.param("layer", WrongBody(-100_000), None, id="layer-body-shorter"),  # resumed by Range
    # Junk after the config, on a connection kept open that the next request (a layer) reuses.
    pytest.param("config", WrongBody(+1000, keep_open=True), None, id="config-body-longer"),
    pytest.param("config", WrongBody(-100), None, id="config-body-shorter"),
    pytest.param("manifest", WrongLength(-100, keep_open=True), "content digest is", id="manifest-declared-shorter"),
    pytest.param("manifest", WrongLength(+100), None, id="manifest-declared-longer"),  # broke off: asked again
])
def test_wrong_content_length(env: Env, proxy: RegistryFaultProxy, busybox: tuple[str, BuiltImage],
                              target: str, action: Action, says: str | None) -> None:
    _, image = busybox
    ref = f"{proxy.host}/test/busybox:latest"
    path = {"layer": big_layer(image), "config": f"/blobs/{image.config_desc.digest}",
            "manifest": "/manifests/latest"}[target]
    proxy.add(Fault(path, action, attempts={1}))
    if says is None:
        pull_and_run(env, ref, image)
        assert proxy.requests(path)[0].action == type(action).__name__
        return
    line = one_line(pull(env, ref))
    assert says in line and proxy.host in line, line
    check_store(env, image, pulled=False)
    pull_and_run(env, ref, image)


def test_a_blob_resumed_with_a_wrong_length_still_verifies(env: Env, proxy: RegistryFaultProxy,
                                                           busybox: tuple[str, BuiltImage]) -> None:
    """Cut mid-layer, then the resume's 206 says less than it sends: resumed again, verified."""
    _, image = busybox
    layer = big_layer(image)
    proxy.add(Fault(layer, Cut(after=BIG), attempts={1}))
    proxy.add(Fault(layer, WrongLength(-5000, keep_open=True), attempts={2}))
    pull_and_run(env, f"{proxy.host}/test/busybox:latest", image)
    ranges = [s.range for s in proxy.requests(layer)]
    size = max(d.size for d, _ in image.layers)
    # A reset loses what the client had not read yet: the first resume starts at most at BIG.
    assert ranges[0] == "" and 0 < int(ranges[1][len("bytes="):-1]) <= BIG, ranges
    # The 206 ended 5000 bytes early by its Content-Length: asked again from there.  (The
    # 5000 bytes left on that connection are junk to the next answer read from it: retried.)
    assert f"bytes={size - 5000}-" in ranges[2:], ranges


# --- a token that expires mid-pull ------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryHandle, BuiltImage]]:
    """A registry behind a token server that lets anyone pull; busybox pushed as alice."""
    with start_registry(tmp_path_factory.mktemp("token-registry"), auth="token", users=USERS,
                        allow_anonymous_pull=True) as handle:
        image = build_image(busybox_layers())
        client = RegistryClient(RegistryOptions(plain_http=True, docker_config=None,
                                                credentials=lambda host: Credentials("alice", USERS["alice"])))
        try:
            push_image(client, f"{handle.host}/test/busybox:latest", image, tag="latest")
        finally:
            client.close()
        yield handle, image


def test_token_expiring_mid_pull_is_refreshed_once(env: Env, token_registry: tuple[RegistryHandle, BuiltImage]
                                                   ) -> None:
    """The token serves the manifest and the config, then every layer request with
    it is refused (401, error="invalid_token"): one new token, and the pull completes."""
    handle, image = token_registry
    assert handle.token_server is not None
    with RegistryFaultProxy(handle.host, token_uses=2) as proxy:
        ref = f"{proxy.host}/test/busybox:latest"
        issued = len(handle.token_server.issued)
        pull_and_run(env, ref, image)
        assert proxy.token_refusals >= 1
        assert len(handle.token_server.issued) - issued == 2  # the first token, and one refresh
        assert [s.status for s in proxy.requests("/blobs/") if s.action != "TokenExpired"] == [200] * 4


# --- 429 Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_retry_after_is_honoured(env: Env, proxy: RegistryFaultProxy, busybox: tuple[str, BuiltImage],
                                     form: str) -> None:
    _, image = busybox

    def retry_after() -> dict[str, str]:
        if form == "seconds":
            return {"Retry-After": "1"}
        return {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)}  # 1 to 2 s from now

    layer = big_layer(image)
    for path in ("/manifests/latest", layer):
        proxy.add(Fault(path, Status(429, retry_after, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'),
                        attempts={1}))
    pull_and_run(env, f"{proxy.host}/test/busybox:latest", image)
    for path in ("/manifests/latest", layer):
        first, second = proxy.requests(path)[:2]
        assert first.status == 429 and second.status == 200
        assert second.at - first.at >= 0.95, (path, second.at - first.at)


def test_429_with_a_huge_retry_after_fails_at_once(env: Env, proxy: RegistryFaultProxy,
                                                   busybox: tuple[str, BuiltImage]) -> None:
    _, image = busybox
    ref = f"{proxy.host}/test/busybox:latest"
    proxy.add(Fault("/manifests/", Status(429, {"Retry-After": "3600"})))
    started = time.monotonic()
    line = one_line(pull(env, ref))
    assert time.monotonic() - started < 10
    assert "answered 429" in line and "retry after 3600s" in line, line
    assert len(proxy.requests("/manifests/")) == 1
    check_store(env, image, pulled=False)
    proxy.clear()
    pull_and_run(env, ref, image)


# --- mirrors that are down ----------------------------------------------------------------------


def write_hosts(env: Env, namespace: str, server: str, mirrors: list[str]) -> None:
    directory = certs_d(env) / namespace
    directory.mkdir(parents=True, exist_ok=True)
    text = f'server = "http://{server}"\n'
    for mirror in mirrors:
        text += f'\n[host."http://{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
    (directory / "hosts.toml").write_text(text)


@pytest.fixture
def mirrors(registry: Registry) -> Iterator[dict[str, RegistryFaultProxy]]:
    """Proxies in front of the registry: three broken mirrors, a clean one
    standing for the upstream server (so the test sees what it was asked)."""
    host = registry.host
    with RegistryFaultProxy(host) as reset, RegistryFaultProxy(host) as hangup, \
            RegistryFaultProxy(host) as broken, RegistryFaultProxy(host) as upstream:
        reset.add(Fault("", Reset(), method=None))
        hangup.add(Fault("", Close(), method=None))
        broken.add(Fault("", Status(503), method=None))
        yield {"reset": reset, "hangup": hangup, "broken": broken, "upstream": upstream}


def test_mirrors_down_fall_back_in_hosts_order(env: Env, registry: Registry, busybox: tuple[str, BuiltImage],
                                               mirrors: dict[str, RegistryFaultProxy]) -> None:
    """A closed port, a mirror resetting connections, one hanging up, one answering
    503: each is asked once per request, in hosts.toml order, then the server."""
    ref, image = busybox
    namespace = registry.host
    order = ["reset", "hangup", "broken"]
    write_hosts(env, namespace, mirrors["upstream"].host,
                [f"127.0.0.1:{free_port()}", *(mirrors[name].host for name in order)])
    pull_and_run(env, ref, image, plain_http=False)  # http from hosts.toml alone
    served = mirrors["upstream"].requests()
    assert {s.path for s in served} >= {"/v2/test/busybox/manifests/latest", f"/v2/test/busybox{big_layer(image)}"}
    for request in served:
        asked = [mirrors[name].requests(f"^{request.path}$", method=request.method) for name in order]
        assert all(len(a) == 1 for a in asked), (request, asked)
        times = [a[0].at for a in asked] + [request.at]
        assert times == sorted(times), (request.path, times)


def test_mirror_dying_mid_pull_falls_back_for_the_blobs(env: Env, registry: Registry,
                                                        busybox: tuple[str, BuiltImage],
                                                        mirrors: dict[str, RegistryFaultProxy]) -> None:
    ref, image = busybox
    flaky = mirrors["reset"]
    flaky.clear()
    flaky.add(Fault("/blobs/", Reset()))  # manifests are served, blobs are not
    write_hosts(env, registry.host, mirrors["upstream"].host, [flaky.host])
    pull_and_run(env, ref, image)
    assert [s.status for s in flaky.requests("/manifests/")] == [200]
    assert mirrors["upstream"].requests("/manifests/") == []
    assert len(mirrors["upstream"].requests("/blobs/", method="GET")) == 4


def test_every_host_down_is_one_line_naming_them_then_a_retry_works(env: Env, registry: Registry,
                                                                    busybox: tuple[str, BuiltImage],
                                                                    mirrors: dict[str, RegistryFaultProxy]) -> None:
    ref, image = busybox
    upstream = mirrors["upstream"]
    upstream.add(Fault("", Status(503), method=None))
    write_hosts(env, registry.host, upstream.host,
                [mirrors["reset"].host, mirrors["broken"].host])
    line = one_line(pull(env, ref))
    assert "503" in line and "also tried" in line, line
    for name in ("reset", "broken", "upstream"):
        assert mirrors[name].host in line, (name, line)
    assert len(upstream.requests("/manifests/")) == 3  # the server gets its retries (2), mirrors none
    check_store(env, image, pulled=False)
    upstream.clear()
    pull_and_run(env, ref, image)


def test_upstream_resetting_is_retried(env: Env, proxy: RegistryFaultProxy,
                                       busybox: tuple[str, BuiltImage]) -> None:
    _, image = busybox
    proxy.add(Fault("/manifests/", Reset(), attempts={1}))
    proxy.add(Fault(big_layer(image), Reset(), attempts={1, 2}))
    pull_and_run(env, f"{proxy.host}/test/busybox:latest", image)
    assert [s.action for s in proxy.requests(big_layer(image))] == ["Reset", "Reset", ""]
