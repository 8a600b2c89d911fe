"""``hawser events``: started before a pull, a run and an rm, it shows their
events in order as they happen; ``--since`` replays them afterwards."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import Env
from tests.support.images import BuiltImage

pytestmark = pytest.mark.integration


def test_events_follow_and_replay(overlay_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    env = overlay_env
    ref, _ = busybox
    start = time.time()
    follower = env.popen("events", "--format", "json")
    try:
        time.sleep(1.0)  # the follower is reading before anything happens
        env.cli("pull", "--plain-http", "-q", ref)
        container = env.cli("run", "-d", "--name", "ev", ref, "sh", "-c", "exit 3").stdout.strip()
        env.cli("wait", container)
        env.cli("rm", container)
        time.sleep(1.0)
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    live = [json.loads(line) for line in out.splitlines() if line.strip()]
    wanted = [("image", "pull"), ("container", "create"), ("container", "start"), ("container", "exit"),
              ("container", "remove")]
    assert [(e["type"], e["action"]) for e in live] == wanted, live
    assert live[0]["name"] == ref and all(e["id"] == container for e in live[1:])
    exits = [e for e in live if e["action"] == "exit"]
    assert exits[0]["attributes"] == {"image": ref, "exitCode": "3", "reason": "Error"}

    replayed = env.cli("events", "--since", str(start), "--until", str(time.time()), "--format", "json").stdout
    assert [json.loads(line) for line in replayed.splitlines()] == live
    only = env.cli("events", "--since", str(start), "--until", str(time.time()), "--filter", "type=image").stdout
    assert len(only.splitlines()) == 1 and " image pull " in only
    named = env.cli("events", "--since", str(start), "--until", str(time.time()), "--filter", "container=ev",
                    "--filter", "event=start", "--format", "json").stdout
    assert [json.loads(line)["action"] for line in named.splitlines()] == ["start"]
    bad = env.cli("events", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr


def test_a_follower_is_stopped_by_until(overlay_env: Env) -> None:
    begun = time.monotonic()
    proc = overlay_env.cli("events", "--until", str(time.time() + 1.5), timeout=30)
    assert proc.returncode == 0 and 1.0 < time.monotonic() - begun < 20


def test_a_container_that_exits_at_once_is_told_started_before_exited(overlay_env: Env,
                                                                      busybox: tuple[str, BuiltImage]) -> None:
    """Its exit can be read (here by a ``ps`` racing the start) before ``runc
    start`` has returned and the start been told: the exit waits for it, so
    the journal says start, then exit, as containerd's events do."""
    env = overlay_env
    ref, _ = busybox
    env.cli("pull", "--plain-http", "-q", ref)
    start = time.time()
    # The start holds after runc start returned, before it tells anyone.
    runner = env.popen("run", "-d", "--name", "quick", ref, "true",
                       env={"HAWSER_FAILPOINTS": "start.after-runc=sleep:1.5"})
    deadline = time.monotonic() + 20
    while "quick" not in env.cli("ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # it has exited by now; this ps reads the exit while the start is held
    env.cli("ps", "-a")
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    env.cli("rm", "quick")
    told = env.cli("events", "--since", str(start), "--until", str(time.time()), "--format", "json").stdout
    actions = [json.loads(line)["action"] for line in told.splitlines()
               if json.loads(line)["type"] == "container"]
    assert actions == ["create", "start", "exit", "remove"], actions
