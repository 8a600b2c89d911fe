"""PullImage of an image that is there already, over hawserd's CRI socket.

Such a pull needs no process of its own: the pull worker's checker resolves
the reference at the registry again and finds the image whole in the store
(images._pull_worker).  Whether a pull's process ran is seen through the
``pull.after-manifest`` failpoint, armed to ``sleep:0`` (a no-op that logs):
every pull's process that gets past the resolve logs it once, the checker
never does.  A moved tag, an image partly gone, other credentials and a
cancelled pull must all come out as they would without the checker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.registry import Credentials, RegistryClient, RegistryOptions
from tests.e2e.helpers import pull_request, small_image, spec, status_code
from tests.e2e.test_pull_worker import start_with
from tests.support.failpoints import failpoint_env, fired
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, push_image
from tests.support.registry_faults import Drip, Fault, RegistryFaultProxy
from tests.support.registry_fixtures import Registry
from tests.support.registry_server import RegistryHandle, start_registry

USERS = {"alice": "alice-password", "bob": "bob-password"}


@pytest.fixture
def pulls_logged(hawserd: Hawserd, tmp_path: Path) -> Path:
    """hawserd whose pulls' processes each log ``pull.after-manifest`` to the returned file."""
    log = tmp_path / "failpoints.log"
    start_with(hawserd, failpoint_env("pull.after-manifest=sleep:0", log))
    return log


def processes(log: Path) -> int:
    """How many pulls' processes went past their resolve."""
    return len(fired(log))


def image_id(image: BuiltImage) -> str:
    return str(image.config_desc.digest)


def test_a_present_image_is_answered_without_a_pull_process_and_a_moved_tag_is_pulled_anew(
        hawserd: Hawserd, registry: Registry, push_client: RegistryClient, pulls_logged: Path) -> None:
    hawserd.plain_http(registry.host)
    ref = f"{registry.host}/e2e/present-moved:v1"
    first, second = small_image("present: the first"), small_image("present: the second")
    push_image(push_client, ref, first, tag="v1")
    images = hawserd.client().images
    assert images.PullImage(pull_request(ref)).image_ref == image_id(first)
    assert processes(pulls_logged) == 1
    for _ in range(3):
        assert images.PullImage(pull_request(ref)).image_ref == image_id(first)
    assert processes(pulls_logged) == 1

    # The tag moves: the next pull finds it out at the registry, and pulls.
    push_image(push_client, ref, second, tag="v1")
    assert images.PullImage(pull_request(ref)).image_ref == image_id(second)
    assert processes(pulls_logged) == 2
    assert images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref))).image.id == image_id(second)
    tagged = {i.id for i in images.ListImages(api_pb2.ListImagesRequest()).images if ref in i.repo_tags}
    assert tagged == {image_id(second)}
    assert images.PullImage(pull_request(ref)).image_ref == image_id(second)
    assert processes(pulls_logged) == 2

    # Back to the first: everything of it is stored still, but the name points elsewhere.
    push_image(push_client, ref, first, tag="v1")
    assert images.PullImage(pull_request(ref)).image_ref == image_id(first)
    assert processes(pulls_logged) == 3
    assert images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref))).image.id == image_id(first)


def test_a_present_image_pulled_by_digest(hawserd: Hawserd, registry: Registry, push_client: RegistryClient,
                                         pulls_logged: Path) -> None:
    hawserd.plain_http(registry.host)
    image = small_image("present: by digest")
    push_image(push_client, f"{registry.host}/e2e/present-digest:v1", image, tag="v1")
    ref = f"{registry.host}/e2e/present-digest@{image.manifest_desc.digest}"
    images = hawserd.client().images
    assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
    assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
    assert processes(pulls_logged) == 1


def test_an_image_partly_gone_is_pulled_again(hawserd: Hawserd, registry: Registry, push_client: RegistryClient,
                                             pulls_logged: Path) -> None:
    hawserd.plain_http(registry.host)
    ref = f"{registry.host}/e2e/present-partly:v1"
    image = small_image("present: partly gone")
    push_image(push_client, ref, image, tag="v1")
    images = hawserd.client().images
    assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
    layer = hawserd.root / "content" / "blobs" / "sha256" / image.layers[0][0].digest.encoded
    assert layer.is_file()
    layer.unlink()  # as a disk that lost it
    assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
    assert processes(pulls_logged) == 2
    assert layer.is_file()
    assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
    assert processes(pulls_logged) == 2


def test_many_pulls_of_present_images_at_once(hawserd: Hawserd, registry: Registry,
                                              push_client: RegistryClient) -> None:
    """The checker takes one at a time; the others get processes of their own."""
    hawserd.plain_http(registry.host)
    refs = {}
    for i in range(3):
        ref = f"{registry.host}/e2e/present-many-{i}:v1"
        refs[ref] = small_image(f"present: many {i}")
        push_image(push_client, ref, refs[ref], tag="v1")
    images = hawserd.client().images
    for ref in refs:
        images.PullImage(pull_request(ref))
    calls = [(ref, images.PullImage.future(pull_request(ref))) for ref in refs for _ in range(3)]
    for ref, call in calls:
        assert call.result(timeout=60).image_ref == image_id(refs[ref])


# --- credentials ------------------------------------------------------------------


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path, auth="token", users=USERS) as reg:
        yield reg


def test_the_request_credentials_apply_to_a_present_image(hawserd: Hawserd, token_registry: RegistryHandle,
                                                          pulls_logged: Path) -> None:
    ref = f"{token_registry.host}/private/present:v1"
    image = small_image("present: private")
    creds = Credentials("alice", USERS["alice"])
    with RegistryClient(RegistryOptions(plain_http=True, docker_config=None, credentials=lambda h: creds)) as c:
        push_image(c, ref, image, tag="v1")
    hawserd.plain_http(token_registry.host)
    images = hawserd.client().images
    alice = {"username": "alice", "password": USERS["alice"]}
    assert images.PullImage(pull_request(ref, **alice)).image_ref == image_id(image)
    assert images.PullImage(pull_request(ref, **alice)).image_ref == image_id(image)
    # Present or not, a pull without the registry's consent fails as it did.
    code, message = status_code(images.PullImage, pull_request(ref))
    assert code == grpc.StatusCode.PERMISSION_DENIED, message
    code, message = status_code(images.PullImage, pull_request(ref, username="alice", password="not-hers-xyz"))
    assert code == grpc.StatusCode.PERMISSION_DENIED, message
    code, _ = status_code(images.PullImage, pull_request(ref, **alice, server_address="elsewhere.example:5000"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert images.PullImage(pull_request(ref, username="bob", password=USERS["bob"])).image_ref == image_id(image)
    assert processes(pulls_logged) == 1
    log = hawserd.log()
    assert "not-hers-xyz" not in log and USERS["alice"] not in log and USERS["bob"] not in log


# --- cancellation -----------------------------------------------------------------


def test_a_cancelled_pull_of_a_present_image_leaves_the_next_one_answered(
        hawserd: Hawserd, registry: Registry, push_client: RegistryClient, pulls_logged: Path) -> None:
    with RegistryFaultProxy(registry.host) as proxy:
        hawserd.plain_http(proxy.host)
        image = small_image("present: cancelled")
        push_image(push_client, f"{registry.host}/e2e/present-cancelled:v1", image, tag="v1")
        ref = f"{proxy.host}/e2e/present-cancelled:v1"
        images = hawserd.client().images
        assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
        resolves = len(proxy.requests("/manifests/v1"))
        # Each pull asks the registry again, present or not.
        assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
        assert len(proxy.requests("/manifests/v1")) == resolves + 1
        # The registry stalls; kubelet gives up.
        proxy.add(Fault(r"/manifests/v1", Drip(chunk=1, interval=0.5)))
        code, _ = status_code(images.PullImage, pull_request(ref), timeout=2)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        proxy.clear()
        started = time.monotonic()
        # The first may come before the killed checker is reaped (then it gets a process of its own).
        assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
        assert time.monotonic() - started < 5
        after = processes(pulls_logged)
        assert after <= 2
        for _ in range(2):
            assert images.PullImage(pull_request(ref)).image_ref == image_id(image)
        assert processes(pulls_logged) == after  # a new checker answers
    assert 'msg="pull worker died"' not in hawserd.log()
