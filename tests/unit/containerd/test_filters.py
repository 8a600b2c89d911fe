"""containerd's filter syntax and label updates, as ctr sends them."""

from __future__ import annotations

import pytest

from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.containerd.namespaces import updated_labels
from hawser.errors import InvalidArgument


def matches(filters: list[str], fields: dict[str, str], labels: dict[str, str] | None = None) -> bool:
    return parse_filters(filters).matches(labels_adaptor(fields, labels or {}))


def test_no_filter_matches_everything() -> None:
    assert matches([], {"name": "x"}) and matches([""], {})


@pytest.mark.parametrize(("text", "want"), [
    ("name==web", True), ("name!=web", False), ("name~=^w", True), ("name~=b$", True), ("name==db", False),
    ("labels.tier==front", True), ("labels.tier", True), ("labels.missing", False), ("labels.missing!=x", True),
    ('labels."a.b/c"==d', True), ('name=="web"', True), ("name==web,labels.tier==front", True),
    ("name==web,labels.tier==back", False),
])
def test_selectors(text: str, want: bool) -> None:
    assert matches([text], {"name": "web"}, {"tier": "front", "a.b/c": "d"}) is want


def test_filters_are_alternatives() -> None:
    assert matches(["name==db", "name==web"], {"name": "web"})
    assert not matches(["name==db", "name==cache"], {"name": "web"})


def test_a_quoted_value_holds_commas() -> None:
    assert matches(['labels.x=="a,b"'], {}, {"x": "a,b"})


@pytest.mark.parametrize("text", ["==x", "name~=(", "name==a junk,", ".name"])
def test_malformed_filters_are_invalid_arguments(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_filters([text])


def test_label_updates_follow_the_field_mask() -> None:
    have = {"a": "1", "b": "2"}
    assert updated_labels(have, {"c": "3"}, []) == {"c": "3"}
    assert updated_labels(have, {"c": "3"}, ["labels"]) == {"c": "3"}
    assert updated_labels(have, {"b": "9", "a": ""}, ["labels.b", "labels.a"]) == {"b": "9"}
    with pytest.raises(InvalidArgument):
        updated_labels(have, {}, ["name"])
