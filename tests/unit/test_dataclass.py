"""hawser._dataclass behaves as the standard dataclasses do for what hawser uses."""

from __future__ import annotations

import copy
import dataclasses as std
import pickle
import subprocess
import sys

import pytest

from hawser._dataclass import FrozenInstanceError, asdict, dataclass, field, fields, is_dataclass, replace


@dataclass(frozen=True, slots=True)
class Point:
    """A point."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    name: str
    size: int = 1
    extra: dict[str, str] = field(default_factory=dict, hash=False)
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("negative size")


@dataclass(slots=True)
class Counter:
    n: int = 0
    seen: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Nested:
    point: Point
    points: list[Point]
    by_name: dict[str, Checked]


# The same classes made by the standard library: both must agree.
StdPoint = std.dataclass(frozen=True, slots=True)(type("Point", (), {
    "__annotations__": {"x": "int", "y": "int", "tags": "tuple[str, ...]"}, "y": 0, "tags": ()}))


def test_construction_matches_the_standard_library() -> None:
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((1,), {"y": 3}), ((), {"x": 1, "tags": ("a",)})]:
        ours, theirs = Point(*args, **kwargs), StdPoint(*args, **kwargs)
        assert std.astuple(theirs) == (ours.x, ours.y, ours.tags)
        assert repr(ours) == repr(theirs).replace("StdPoint", "Point")
    for args, kwargs in [((), {}), ((1, 2, (), 4), {}), ((1,), {"x": 2}), ((1,), {"z": 1})]:
        with pytest.raises(TypeError):
            StdPoint(*args, **kwargs)
        with pytest.raises(TypeError):
            Point(*args, **kwargs)


def test_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4"):
        Point(1, 2, (), 4)  # type: ignore[call-arg]


def test_kw_only_defaults_factories_and_post_init() -> None:
    a, b = Checked(name="a"), Checked(name="a")
    assert a.extra == {} and a.extra is not b.extra
    assert Checked.__match_args__ == ()
    with pytest.raises(TypeError):
        Checked("a")  # type: ignore[misc]
    with pytest.raises(ValueError, match="negative size"):
        Checked(name="a", size=-1)
    with pytest.raises(ValueError, match="negative size"):
        replace(a, size=-1)  # validated again


def test_frozen_slotted_equal_and_hashable() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    assert Point.__slots__ == ("x", "y", "tags")
    assert Point.__doc__ == "A point."
    assert p == Point(1, 2) and p != Point(2, 1) and p != (1, 2, ())
    assert hash(p) == hash(Point(1, 2))
    # A field with hash=False is compared but not hashed, so an unhashable value is fine.
    c = Checked(name="a", extra={"k": "v"})
    assert hash(c) == hash(Checked(name="a", extra={"other": "x"}))
    assert c != Checked(name="a", extra={"other": "x"})
    assert "secret" not in repr(Checked(name="a", secret="hunter2"))


def test_mutable_dataclass() -> None:
    c = Counter()
    c.n += 1
    c.seen.append(1)
    assert c == Counter(1, [1])
    with pytest.raises(TypeError):
        hash(c)


def test_pattern_matching() -> None:
    match Point(1, 2):
        case Point(x, y):
            assert (x, y) == (1, 2)
        case _:
            pytest.fail("no match")


def test_fields_replace_asdict() -> None:
    assert [f.name for f in fields(Point)] == ["x", "y", "tags"]
    assert [f.name for f in fields(Point(1))] == ["x", "y", "tags"]
    assert is_dataclass(Point) and is_dataclass(Point(1)) and not is_dataclass(object())
    with pytest.raises(TypeError):
        fields(object())
    p = Point(1, 2, ("a",))
    assert replace(p, y=5) == Point(1, 5, ("a",)) and p.y == 2
    n = Nested(point=p, points=[p], by_name={"c": Checked(name="c")})
    assert asdict(n) == {
        "point": {"x": 1, "y": 2, "tags": ("a",)},
        "points": [{"x": 1, "y": 2, "tags": ("a",)}],
        "by_name": {"c": {"name": "c", "size": 1, "extra": {}, "secret": ""}},
    }
    with pytest.raises(TypeError):
        asdict(Point)


def test_pickle_and_copy() -> None:
    n = Nested(point=Point(1), points=[Point(2)], by_name={"c": Checked(name="c", extra={"a": "b"})})
    assert pickle.loads(pickle.dumps(n)) == n
    assert copy.copy(n) == n
    deep = copy.deepcopy(n)
    assert deep == n and deep.points is not n.points


def test_definition_errors() -> None:
    with pytest.raises(ValueError, match="mutable default"):
        @dataclass(frozen=True, slots=True)
        class Bad:
            items: list[int] = []

    with pytest.raises(TypeError, match="non-default field 'b' follows a default field"):
        @dataclass(frozen=True, slots=True)
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=int)


def test_defining_costs_no_dataclasses_or_inspect_import() -> None:
    code = ("import sys; import hawser._dataclass, hawser.oci, hawser.config, hawser.metadata;"
            "print(sorted({'dataclasses', 'inspect', 'typing'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "dataclasses" not in out and "inspect" not in out
