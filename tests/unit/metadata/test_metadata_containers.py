"""The container records' update: one transaction, labels replaced or merged,
config entries set under their top-level key, NotFound for an unknown id; a
record's config read back as it was written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser._dataclass import replace
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container, Metadata


@pytest.fixture
def md(tmp_path: Path) -> Iterator[Metadata]:
    db = Metadata(tmp_path / "metadata.db")
    yield db
    db.close()


def record(id_: str = "c1", namespace: str = "default") -> Container:
    return Container(namespace=namespace, id=id_, name=id_, image="r.io/a:1", image_id="", snapshotter="native",
                     snapshot_key=f"key-{id_}", config={"containerd": {"spec": {"a": 1}, "updated_at": 1.0},
                                                         "other": "kept"},
                     labels={"a": "1", "b": "2"}, created_at=1.0)


def test_update_fields_and_keeps_the_rest(md: Metadata) -> None:
    md.containers.create(record())
    updated = md.containers.update("c1", image="r.io/b:2", image_id="sha256:" + "a" * 64, snapshot_key="other-key")
    assert (updated.image, updated.image_id, updated.snapshot_key) == ("r.io/b:2", "sha256:" + "a" * 64, "other-key")
    assert dict(updated.labels) == {"a": "1", "b": "2"} and updated.created_at == 1.0
    assert md.containers.get("c1") == updated


def test_labels_replace_or_merge(md: Metadata) -> None:
    md.containers.create(record())
    assert dict(md.containers.update("c1", labels={"a": "9", "b": "", "c": "3"}, merge=True).labels) \
        == {"a": "9", "c": "3"}
    assert dict(md.containers.update("c1", labels={"z": "1", "empty": ""}).labels) == {"z": "1"}
    with pytest.raises(InvalidArgument):
        md.containers.update("c1", labels={"k": "v" * 5000})
    assert dict(md.containers.get("c1").labels) == {"z": "1"}


def test_config_entries_are_set_under_their_key(md: Metadata) -> None:
    md.containers.create(record())
    updated = md.containers.update("c1", config={"containerd": {"updated_at": 2.0}, "fresh": {"x": 1}})
    assert dict(updated.config) == {"containerd": {"spec": {"a": 1}, "updated_at": 2.0}, "other": "kept",
                                    "fresh": {"x": 1}}
    # A value that is not a mapping is replaced by one.
    assert md.containers.update("c1", config={"other": {"y": 2}}).config["other"] == {"y": 2}


def test_unknown_or_other_namespace_is_not_found(md: Metadata) -> None:
    md.containers.create(record(namespace="team"))
    with pytest.raises(NotFound):
        md.containers.update("c1", image="x")
    with pytest.raises(NotFound):
        md.containers.update("nope", image="x", namespace="team")
    assert md.containers.update("c1", image="x", namespace="team").image == "x"


def test_concurrent_label_merges_keep_each_other(tmp_path: Path, md: Metadata) -> None:
    md.containers.create(record())
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with Metadata(tmp_path / "metadata.db") as mine:
                for i in range(20):
                    mine.containers.update("c1", labels={f"w{n}-{i}": "x"}, merge=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(md.containers.get("c1").labels) == 2 + 60


def test_an_id_is_one_containers_in_every_namespace(md: Metadata) -> None:
    """The runtime keeps a container's state by id alone: a second namespace cannot take it
    (containerd allows it; hawser refuses it rather than share a bundle); names are per namespace."""
    from hawser.errors import AlreadyExists

    md.containers.create(record("shared", namespace="one"))
    with pytest.raises(AlreadyExists, match="in namespace 'one'"):
        md.containers.create(record("shared", namespace="two"))
    other = record("elsewhere", namespace="two")
    md.containers.create(Container(**{**{k: getattr(other, k) for k in ("namespace", "id", "image", "image_id",
                                                                          "snapshotter", "snapshot_key", "config",
                                                                          "labels", "created_at")},
                                      "name": "shared"}))


def test_find_looks_in_every_namespace(md: Metadata) -> None:
    md.containers.create(record("here", namespace="one"))
    found = md.containers.find("here")
    assert found is not None and found.namespace == "one"
    assert md.containers.find("absent") is None


def test_a_listed_config_reads_as_written(md: Metadata) -> None:
    # Decoded when first read (a listing decodes none): it still reads, compares and copies as a dict.
    written = record().config
    md.containers.create(record())
    (listed,) = md.containers.list()
    assert listed.config == written and dict(listed.config) == written and listed == md.containers.get("c1")
    assert "other" in listed.config and "missing" not in listed.config and listed.config.get("missing") is None
    assert len(listed.config) == 2 and sorted(listed.config) == ["containerd", "other"]
    assert listed.config["containerd"]["spec"] == {"a": 1}
    md.containers.create(replace(listed, id="c2", name="c2"))
    assert md.containers.get("c2").config == written


def test_a_lazy_config_answers_a_key_it_does_not_spell_without_decoding() -> None:
    from hawser.metadata._containers import _Config

    config = _Config('{"spec": {"process": {"args": ["sh"]}}, "caf\\u00e9": 1}')
    assert config.get("runtime_handler") is None and "runtime_handler" not in config
    assert config._data is None  # not decoded for that
    assert config.get("café") == 1 and "café" in config  # a key JSON escapes: decoded, found
    assert config.get("spec") == {"process": {"args": ["sh"]}}
