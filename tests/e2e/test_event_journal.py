"""The event journal as the one source of events: what the CLI did while
hawserd was down reaches GetContainerEvents when it starts again, and
execs, image pulls and removals and GC through the CRI are journaled."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from cri_api.v1 import api_pb2

from tests.e2e.helpers import EventStream, kinds
from tests.support.cri_pods import Pods


def journaled(pods: Pods, since: float) -> list[dict[str, Any]]:
    out = pods.hawserd.cli("events", "--since", str(since), "--until", str(time.time()), "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines()]


def wait_handled(pods: Pods) -> None:
    """Until hawserd's event hub has read the journal to its end (its place is past the last event)."""
    last = journaled(pods, 0)[-1]["time"]
    cursor = pods.hawserd.state / "events" / "cri.cursor"
    wait_until(lambda: cursor.exists() and float(cursor.read_text()) > last)


def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_what_happened_while_hawserd_was_down_reaches_get_container_events(pods: Pods) -> None:
    pod = pods.pod("down")
    stopped_by_cli = pods.run(pod, pods.config("cli", "sleep", "1000"))
    removed_by_cli = pods.run(pod, pods.config("gone", "sleep", "1000"))
    exits_alone = pods.run(pod, pods.config("alone", "sleep", "1000"))
    hawserd = pods.hawserd
    wait_handled(pods)
    assert hawserd.stop() == 0
    hawserd.cli("-n", "k8s.io", "stop", "-t", "5", stopped_by_cli)
    hawserd.cli("-n", "k8s.io", "rm", "-f", removed_by_cli)
    # The third ends with nobody looking: a signal, and no status read until hawserd starts.
    hawserd.cli("-n", "k8s.io", "kill", "-s", "KILL", exits_alone)
    wait_until(lambda: os.path.exists(hawserd.state / "exits" / exits_alone))
    hawserd.start()

    stream = EventStream(hawserd)
    try:
        events = stream.wait_for(lambda ev: api_pb2.CONTAINER_STOPPED_EVENT in kinds(ev, exits_alone))
        assert kinds(events, stopped_by_cli) == [api_pb2.CONTAINER_STOPPED_EVENT]
        assert kinds(events, removed_by_cli) == [api_pb2.CONTAINER_STOPPED_EVENT, api_pb2.CONTAINER_DELETED_EVENT]
        assert kinds(events, exits_alone) == [api_pb2.CONTAINER_STOPPED_EVENT]
        exit_alone = next(e for e in events if e.container_id == exits_alone)
        assert exit_alone.pod_sandbox_status.id == pod[0]
        assert {s.id: s.state for s in exit_alone.containers_statuses} == {
            stopped_by_cli: api_pb2.CONTAINER_EXITED, exits_alone: api_pb2.CONTAINER_EXITED}
        # In the order they happened.
        order = [e.container_id for e in events]
        assert order.index(stopped_by_cli) < order.index(removed_by_cli) < order.index(exits_alone)

        # A second subscriber gets what comes next, not the backlog again.
        second = EventStream(hawserd)
        try:
            time.sleep(0.3)  # subscribed
            pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=stopped_by_cli))
            second.wait_for(lambda ev: kinds(ev, stopped_by_cli) == [api_pb2.CONTAINER_DELETED_EVENT])
            assert [e.container_id for e in second.events] == [stopped_by_cli]
        finally:
            second.close()
    finally:
        stream.close()


def test_a_restart_without_news_replays_nothing(pods: Pods) -> None:
    pod = pods.pod("quiet")
    container = pods.run(pod, pods.config("box", "sleep", "1000"))
    wait_handled(pods)
    assert pods.hawserd.stop() == 0
    pods.hawserd.start()
    again = EventStream(pods.hawserd)
    try:
        time.sleep(0.5)
        pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=5))
        events = again.wait_for(lambda ev: api_pb2.CONTAINER_STOPPED_EVENT in kinds(ev, container))
        assert [(e.container_id, e.container_event_type) for e in events] == [
            (container, api_pb2.CONTAINER_STOPPED_EVENT)]
    finally:
        again.close()


def test_execs_images_and_gc_through_the_cri_are_journaled(pods: Pods) -> None:
    begun = time.time()
    pod = pods.pod("journal")
    container = pods.run(pod, pods.config("box", "sleep", "1000"))
    assert pods.exec(container, "sh", "-c", "exit 3").exit_code == 3
    images = pods.hawserd.client().images
    ref = pods.image
    images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)))
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref)))

    seen = journaled(pods, begun)
    execs = [e for e in seen if e["id"] == container and e["action"].startswith("exec-")]
    assert [e["action"] for e in execs] == ["exec-start", "exec-exit"]
    assert execs[0]["attributes"]["command"] == "sh -c exit 3"
    assert execs[1]["attributes"]["exitCode"] == "3"
    assert execs[0]["attributes"]["execID"] == execs[1]["attributes"]["execID"]
    image_events = [(e["action"], e["name"]) for e in seen if e["type"] == "image"]
    assert image_events == [("pull", ref), ("remove", ref)]
    (gc,) = [e for e in seen if e["type"] == "gc"]
    assert gc["namespace"] == "k8s.io" and int(gc["attributes"]["blobs"]) >= 3  # index or manifest, config, layer
    assert int(gc["attributes"]["bytesFreed"]) > 0
