"""The event journal: ordered, shared by processes, crash-tolerant, bounded."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from hawser.events import MAX_BYTES, Event, Journal, container_observer


def event(n: int, **changes: object) -> Event:
    fields: dict[str, object] = {"time": 1000.0 + n, "type": "container", "action": "start", "id": f"c{n}",
                                 "name": f"n{n}", "namespace": "default", "attributes": {"image": "img"}}
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def test_events_come_back_in_order_and_by_time(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    for n in range(5):
        journal.append(event(n))
    assert [e.id for e in journal.read()] == ["c0", "c1", "c2", "c3", "c4"]
    assert [e.id for e in journal.read(since=1001, until=1003)] == ["c1", "c2", "c3"]
    assert next(iter(journal.read())) == event(0)


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal.append(event(0))
    with open(tmp_path / "journal", "ab") as f:
        f.write(b'\n{"time": 1001, "type": "contai')  # a crash in the middle of a record's write
    journal.append(event(2))
    assert [e.id for e in journal.read()] == ["c0", "c2"]


def _append_many(directory: str, worker: int) -> None:
    journal = Journal(directory)
    for n in range(200):
        journal.append(event(n, id=f"w{worker}-{n}"))


def test_processes_appending_at_once_never_interleave_within_a_line(tmp_path: Path) -> None:
    workers = [multiprocessing.get_context("fork").Process(target=_append_many, args=(str(tmp_path), w))
               for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ids = [e.id for e in Journal(str(tmp_path)).read()]
    assert len(ids) == 800 and len(set(ids)) == 800


def test_the_journal_stays_bounded(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), max_bytes=20_000)
    for n in range(10_000):
        journal.append(event(n))
    total = sum(os.path.getsize(tmp_path / name) for name in ("journal", "journal.1"))
    assert total < 2 * 20_000 + 1_000
    kept = [e.id for e in journal.read()]
    assert kept[-1] == "c9999" and kept == sorted(kept, key=lambda i: int(i[1:]))


def test_follow_replays_then_sees_new_events_across_a_rotation(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), max_bytes=2_000)
    journal.append(event(0))
    seen: list[str] = []

    def follow() -> None:
        for e in journal.follow(since=0, stop=time.time() + 5):
            seen.append(e.id)
            if e.id == "c59":
                return

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.3)
    for n in range(1, 60):
        journal.append(event(n))
        time.sleep(0.01)
    reader.join(10)
    assert seen[0] == "c0" and seen[-1] == "c59"
    assert seen == sorted(seen, key=lambda i: int(i[1:]))


def test_a_journal_that_cannot_be_written_loses_the_event_not_the_operation(tmp_path: Path) -> None:
    (tmp_path / "events").write_text("not a directory")
    Journal(str(tmp_path / "events")).append(event(0))  # no exception


class Record:
    id, name, namespace, image = "abc" * 10, "web", "default", "busybox"
    labels = {"app": "web", "image": "not the image"}  # a label may not stand for the image


def test_container_changes_become_events(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    observe = container_observer(journal)
    for kind in ("created", "started", "unknown"):
        observe(kind, Record(), {})
    observe("stopped", Record(), {"exitCode": "3", "reason": "Error"})
    observe("exec-started", Record(), {"execID": "e1", "command": "ls -l"})
    observe("exec-exited", Record(), {"execID": "e1", "exitCode": "0"})
    observe("deleted", Record(), {})
    labels = {"app": "web", "image": "busybox"}
    got = [(e.action, e.name, dict(e.attributes)) for e in journal.read()]
    assert got == [("create", "web", labels), ("start", "web", labels),
                   ("exit", "web", {**labels, "exitCode": "3", "reason": "Error"}),
                   ("exec-start", "web", {**labels, "execID": "e1", "command": "ls -l"}),
                   ("exec-exit", "web", {**labels, "execID": "e1", "exitCode": "0"}),
                   ("remove", "web", labels)]


def test_a_tail_loses_nothing_appended_just_before_a_rotation(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), max_bytes=2000)
    journal.append(event(0))
    tail = journal.tail()
    assert tail.poll() == []
    n = 1
    while (tmp_path / "journal.1").exists() is False:  # write past a rotation between two polls
        journal.append(event(n))
        n += 1
    journal.append(event(n))
    got = [e.id for e in tail.poll()]
    assert got == [f"c{i}" for i in range(1, n + 1)]
    assert tail.poll() == []


def test_a_tail_replays_from_a_time_then_goes_on(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    for n in range(3):
        journal.append(event(n))
    tail = journal.tail(since=1001)
    journal.append(event(3))
    assert [e.id for e in tail.poll()] == ["c1", "c2", "c3"]


def test_a_readers_place_is_kept(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    assert journal.load_cursor("cri") is None
    journal.append(event(0))
    journal.save_cursor("cri", event(0))
    since = journal.load_cursor("cri")
    assert since is not None and since > event(0).time
    journal.append(event(1))
    assert [e.id for e in journal.read(since=since)] == ["c1"]


def test_in_process_listeners_hear_each_append(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    heard: list[int] = []
    journal.listeners.append(lambda: heard.append(1))
    journal.listeners.append(lambda: 1 / 0)  # a failing listener harms neither the append nor the others
    journal.append(event(0))
    journal.append(event(1))
    assert len(heard) == 2 and len(list(journal.read())) == 2


def test_the_journal_stays_bounded_under_10000_container_starts(tmp_path: Path) -> None:
    """At its real size: 10,000 CRI containers created, started, exited and removed, each
    event with a CRI container's labels, stay within twice the journal's bound."""
    journal = Journal(str(tmp_path))
    observe = container_observer(journal)

    class CriRecord:
        namespace, image = "k8s.io", "127.0.0.1:5000/app:v1"
        labels = {"io.kubernetes.pod.name": "web-7d9c", "io.kubernetes.pod.namespace": "default",
                  "io.kubernetes.pod.uid": "5f0c1f0e-6a3b-4c1e-9d2a-0b8f3e6c7a11", "io.kubernetes.container.name": "app",
                  "io.hawser.cri.kind": "container", "io.hawser.cri.sandbox-id": "ab" * 32}

        def __init__(self, n: int) -> None:
            self.id, self.name = f"{n:064x}", f"app-{n}"

    for n in range(10_000):
        record = CriRecord(n)
        for kind in ("created", "started"):
            observe(kind, record, {})
        observe("stopped", record, {"exitCode": "0", "reason": "Completed"})
        observe("deleted", record, {})
    total = sum(os.path.getsize(tmp_path / name) for name in ("journal", "journal.1"))
    assert total <= 2 * MAX_BYTES + 4096
    kept = list(journal.read())
    assert kept[-1].id == f"{9999:064x}" and kept[-1].action == "remove"
