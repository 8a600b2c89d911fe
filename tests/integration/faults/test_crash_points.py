"""The CLI killed (SIGKILL) or failed (an injected error) at each failpoint of
pull, unpack, content and snapshot commits, create, start, stop, rm and GC.

Every case: arm one point (``HAWSER_FAILPOINTS``), run the command, check it
died or failed exactly there; check nothing is corrupt; run what a user runs
next (the pull again, ``ps -a``, ``start``, ``rm -f``, ``prune``) and check it
completes; end with ``settle``: the container made before the fault is still
running and removable, GC leaves a store that checks clean, and no mount,
conmon, cgroup, runc state or bundle of the test is left.
"""

from __future__ import annotations

import pytest

from tests.integration.faults.conftest import FaultEnv
from tests.support.failpoints.check import store_findings

pytestmark = pytest.mark.integration

# Points a pull of an image with 4 layers goes through (@N: the Nth time).
PULL_POINTS = [
    "pull.after-manifest",
    "content.commit.before-rename",
    "content.commit.after-rename",
    "snapshot.create.after-rename",
    "unpack.before-commit",
    "snapshot.commit.in-tx",
    "snapshot.commit.after-tx",
    "unpack.after-layer",
    "unpack.after-layer@3",
    "pull.after-layers",
    "content.commit.before-rename@6",  # the manifest, after the 4 layers and the config
    "pull.before-image-record",
    "pull.after-image-record",
]


@pytest.mark.parametrize("point", PULL_POINTS)
def test_kill_during_pull(busy_env: FaultEnv, point: str) -> None:
    env = busy_env
    assert env.images is not None
    keep = env.bystander()
    env.crash(point, "pull", "--plain-http", "-q", env.images.victim)
    found = store_findings(env.root, env.snapshotter)
    assert found.corrupt == [] and found.garbage != [], found  # at least the dead pull's lease is left
    assert not any(env.leaks(keep=(keep,)).values()), env.leaks(keep=(keep,))
    # The pull again completes (resuming or reusing what the first one did), and the image runs.
    env.run("pull", "--plain-http", "-q", env.images.victim)
    assert env.run("run", "--rm", env.images.victim, "cat", "/etc/victim").stdout == "pulled by the fault battery\n"
    env.settle(keep=(keep,))


@pytest.mark.parametrize("point", PULL_POINTS)
def test_error_during_pull(busy_env: FaultEnv, point: str) -> None:
    env = busy_env
    assert env.images is not None
    env.crash(point, "pull", "--plain-http", "-q", env.images.victim, action="raise")
    env.assert_not_corrupt()
    assert not any(env.leaks().values()), env.leaks()
    env.run("pull", "--plain-http", "-q", env.images.victim)
    env.run("run", "--rm", env.images.victim, "true")
    env.settle()


# The native snapshotter's own unpack path: each layer applied in order onto a snapshot of its parent.
NATIVE_PULL_POINTS = ["snapshot.create.after-rename@2", "unpack.before-commit@2", "snapshot.commit.in-tx@2",
                      "unpack.after-layer@2", "pull.after-layers"]


@pytest.mark.parametrize("point", NATIVE_PULL_POINTS)
def test_kill_during_pull_native(native_env: FaultEnv, point: str) -> None:
    env = native_env
    assert env.images is not None
    env.crash(point, "pull", "--plain-http", "-q", env.images.victim)
    env.assert_not_corrupt()
    env.run("pull", "--plain-http", "-q", env.images.victim)
    assert env.run("run", "--rm", env.images.victim, "cat", "/etc/victim").stdout == "pulled by the fault battery\n"
    env.settle()


# Points of `hawser run -d` (create, then start), in the order it reaches them.
RUN_POINTS = [
    "create.after-record",
    "snapshot.create.after-rename",  # the container's snapshot
    "create.after-mount",
    "create.after-conmon",
    "start.before-runc",
    "start.after-runc",
]


@pytest.mark.parametrize("point", RUN_POINTS)
def test_kill_during_run(busy_env: FaultEnv, point: str) -> None:
    env = busy_env
    assert env.images is not None
    keep = env.bystander()
    env.crash(point, "run", "-d", "--name", "victim", env.images.busybox, "sleep", "1000")
    env.assert_not_corrupt()
    ids = env.ids()
    assert keep in ids
    victims = [i for i in ids if i != keep]
    # Once its record is written, the container is listed, in the state the crash left it.
    assert len(victims) == 1, ids
    victim = victims[0]
    state = env.state_of(victim)
    expected = {"create.after-record": "unknown", "snapshot.create.after-rename": "unknown",
                "create.after-mount": "unknown", "create.after-conmon": "created", "start.before-runc": "created",
                "start.after-runc": "running"}[point]
    assert state == expected, state
    if state == "created":
        env.run("start", victim)  # what the crash interrupted can be finished
        assert env.state_of(victim) == "running"
    env.run("rm", "-f", victim)
    assert env.ids() == [keep]
    assert not any(env.leaks(keep=(keep,)).values()), env.leaks(keep=(keep,))
    # The name is free again, and a container runs.
    assert env.run("run", "--rm", "--name", "victim", env.images.busybox, "echo", "ok").stdout == "ok\n"
    env.settle(keep=(keep,))


@pytest.mark.parametrize("point", RUN_POINTS[:4])
def test_error_during_create(busy_env: FaultEnv, point: str) -> None:
    env = busy_env
    assert env.images is not None
    env.crash(point, "run", "-d", "--name", "victim", env.images.busybox, "sleep", "1000", action="raise")
    # The create is undone whole: no record, snapshot, mount, conmon, cgroup or bundle.
    assert env.ids() == []
    assert not any(env.leaks().values()), env.leaks()
    found = store_findings(env.root, env.snapshotter)
    assert (found.corrupt, found.garbage) == ([], []), found
    env.run("run", "--rm", "--name", "victim", env.images.busybox, "true")
    env.settle()


@pytest.mark.parametrize("point", RUN_POINTS[4:])
def test_error_during_start(busy_env: FaultEnv, point: str) -> None:
    env = busy_env
    assert env.images is not None
    victim = env.run("create", "--name", "victim", env.images.busybox, "sleep", "1000").stdout.strip()
    env.crash(point, "start", victim, action="raise")
    if point == "start.before-runc":
        assert env.state_of(victim) == "created"  # nothing happened: start it again
        env.run("start", victim)
    assert env.state_of(victim) == "running"
    env.settle()


STOP_POINT = "stop.after-signal"
# A container that exits on the stop signal (the CLI dies before it waits for that).
TRAP = ["sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.1; done"]


@pytest.mark.parametrize("action", ["kill", "raise"])
def test_fault_during_stop(busy_env: FaultEnv, action: str) -> None:
    env = busy_env
    assert env.images is not None
    keep = env.bystander()
    victim = env.run("run", "-d", env.images.busybox, *TRAP).stdout.strip()
    env.crash(STOP_POINT, "stop", "-t", "5", victim, action=action)
    env.assert_not_corrupt()
    env.run("stop", "-t", "5", victim)  # idempotent: finishes, or finds it stopped
    info = env.run("inspect", victim).stdout
    assert '"Status": "exited"' in info and '"ExitCode": 143' in info, info
    env.run("rm", victim)
    env.settle(keep=(keep,))


# Points of `hawser rm -f` of a running container.
RM_POINTS = [
    "remove.after-kill",
    "snapshot.remove.in-tx",
    "snapshot.remove.after-commit",
    "snapshot.remove.before-rmtree",
    "remove.after-runc-delete",
    "remove.before-record-delete",
]


@pytest.mark.parametrize("action", ["kill", "raise"])
@pytest.mark.parametrize("point", RM_POINTS)
def test_fault_during_rm(busy_env: FaultEnv, point: str, action: str) -> None:
    env = busy_env
    assert env.images is not None
    keep = env.bystander()
    victim = env.run("run", "-d", env.images.busybox, "sleep", "1000").stdout.strip()
    env.crash(point, "rm", "-f", victim, action=action)
    env.assert_not_corrupt()
    # Not lost half-way: still listed (the record goes last), and rm -f finishes the job.
    assert sorted(env.ids()) == sorted([keep, victim])
    assert env.state_of(victim) in ("exited", "unknown")
    env.run("rm", "-f", victim)
    assert env.ids() == [keep]
    assert not any(env.leaks(keep=(keep,)).values()), env.leaks(keep=(keep,))
    env.settle(keep=(keep,))


# Points of GC, run by `hawser rmi` after it removed the image record.
GC_POINTS = [
    "gc.after-records",
    "gc.after-files",
    "snapshot.remove.in-tx",
    "snapshot.remove.after-commit",
    "snapshot.remove.before-rmtree",
    "gc.after-snapshots",
]


@pytest.mark.parametrize("action", ["kill", "raise"])
@pytest.mark.parametrize("point", GC_POINTS)
def test_fault_during_gc(both_env: FaultEnv, point: str, action: str) -> None:
    env = both_env
    assert env.images is not None
    keep = env.bystander()
    # GC goes on past a snapshot it fails to remove; rmi says so.
    env.crash(point, "rmi", env.images.victim, action=action)
    env.assert_not_corrupt()
    # Before any GC finishes the job: the image pulled again must be whole (a
    # layer GC was removing when it died must not be taken for a good one).
    env.run("pull", "--plain-http", "-q", env.images.victim)
    assert env.run("run", "--rm", env.images.victim, "cat", "/etc/victim").stdout == "pulled by the fault battery\n"
    env.run("rmi", env.images.victim)
    # The busybox image of the running container kept every piece.
    assert env.run("run", "--rm", env.images.busybox, "cat", "/etc/layer3").stdout == "3\n"
    env.settle(keep=(keep,))
