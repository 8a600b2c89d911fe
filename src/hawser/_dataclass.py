"""``dataclass``, ``field``, ``fields``, ``replace`` and ``asdict``: the subset
of the standard library's dataclasses that hawser uses, cheap to define.

Every value type in hawser is ``@dataclass(frozen=True, slots=True)`` (a few are
mutable). This module gives them what the standard one does: ``__init__``
(positional or ``kw_only``, defaults, ``default_factory``, ``__post_init__``),
``__repr__``, ``__eq__``, ``__hash__``, ``__match_args__``, ``__slots__``,
pickling and copying. Always slotted; no ordering, no ``InitVar``.

Why not the standard one: on CPython 3.11 it compiles each generated method
with ``exec`` (~0.6 ms a frozen class) and imports ``inspect`` (with ast, dis
and tokenize, ~4 ms). A cold ``hawser run`` defines ~50 of them before its
container starts: a third of the CPU time the CLI spends. Here the methods are
closures over each class's field table: a class costs ~20 us to define and an
instance ~2 us to create. Type checkers see ``dataclass`` through
``dataclass_transform`` (PEP 681), so they check these classes as dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kwargs):  # the type checkers' marker; nothing at run time
        return lambda f: f


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen dataclass."""


class Field:
    """One field of a dataclass: its name and how it is initialised, shown and compared."""

    __slots__ = ("compare", "default", "default_factory", "hash", "kw_only", "name", "repr")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True,
                 compare: bool = True, hash: bool | None = None, kw_only: bool | None = None) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("a field cannot have both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = compare if hash is None else hash
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING, repr: bool = True,
          compare: bool = True, hash: bool | None = None, kw_only: bool | None = None) -> Any:
    """A field's options, as the value of its annotation in the class body."""
    return Field(default, default_factory, repr, compare, hash, kw_only)


_FIELDS = "__hawser_fields__"


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls: type[Any] | None = None, /, *, frozen: bool = False, slots: bool = True,
              kw_only: bool = False) -> Any:
    """Make ``cls`` a dataclass of the fields its body annotates. Always slotted:
    ``slots`` is there to read like the standard decorator and must be true."""
    if not slots:
        raise TypeError("hawser dataclasses are always slotted")
    if cls is None:
        return lambda c: _make(c, frozen, kw_only)
    return _make(cls, frozen, kw_only)


def _make(cls: type[Any], frozen: bool, kw_only: bool) -> type[Any]:
    body = dict(cls.__dict__)
    table: list[Field] = []
    for name, annotation in body.get("__annotations__", {}).items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = body.pop(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"{cls.__name__}.{name}: mutable default {type(spec.default).__name__}; "
                             "use default_factory")
        spec.name = name
        if spec.kw_only is None:
            spec.kw_only = kw_only
        table.append(spec)
    fields_ = tuple(table)
    positional = tuple(f for f in fields_ if not f.kw_only)
    seen_default = False
    for f in positional:
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: non-default field {f.name!r} follows a default field")
        seen_default = seen_default or has_default

    names = tuple(f.name for f in fields_)
    for slot in ("__dict__", "__weakref__"):
        body.pop(slot, None)
    body["__slots__"] = names
    body[_FIELDS] = fields_
    body["__match_args__"] = tuple(f.name for f in positional)
    body["__init__"] = _init(fields_, positional, frozen, "__post_init__" in body)
    body["__repr__"] = _repr(fields_)
    compare = _getter(tuple(f.name for f in fields_ if f.compare))
    body["__eq__"] = _eq(compare)
    if frozen:
        body["__hash__"] = _hash(_getter(tuple(f.name for f in fields_ if f.hash)))
        body["__setattr__"] = _frozen_setattr
        body["__delattr__"] = _frozen_delattr
    else:
        body["__hash__"] = None  # mutable and compared by value: unhashable, as dataclasses makes it
    body["__getstate__"] = _getstate
    body["__setstate__"] = _setstate
    metaclass: Any = type(cls)
    new: type[Any] = metaclass(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of ``names`` as one tuple (attrgetter of one name returns the bare value)."""
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _init(fields_: tuple[Field, ...], positional: tuple[Field, ...], frozen: bool,
          post_init: bool) -> Callable[..., None]:
    plan = tuple((f.name, f.default, f.default_factory) for f in fields_)
    allowed = frozenset(f.name for f in fields_)
    positional_names = tuple(f.name for f in positional)
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            if len(args) > len(positional_names):
                raise TypeError(f"{type(self).__name__}() takes {len(positional_names)} positional arguments "
                                f"but {len(args)} were given")
            for name, value in zip(positional_names, args, strict=False):  # fewer args: defaults
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
                kwargs[name] = value
        if not kwargs.keys() <= allowed:
            unknown = sorted(kwargs.keys() - allowed)[0]
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown!r}")
        for name, default, factory in plan:
            value = kwargs.get(name, MISSING)
            if value is MISSING:
                if default is not MISSING:
                    value = default
                elif factory is not MISSING:
                    value = factory()
                else:
                    raise TypeError(f"{type(self).__name__}() missing required argument {name!r}")
            setter(self, name, value)
        if post_init:
            self.__post_init__()

    return __init__


def _repr(fields_: tuple[Field, ...]) -> Callable[[Any], str]:
    shown = tuple(f.name for f in fields_ if f.repr)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    return __eq__


def _hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _getstate(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fields(self))


def _setstate(self: Any, state: tuple[Any, ...]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


# --- the functions beside the decorator ---------------------------------------------


def is_dataclass(obj: object) -> bool:
    """True for a class made by ``dataclass`` here, or an instance of one."""
    return hasattr(obj, _FIELDS)


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a dataclass or of an instance of one, in definition order."""
    try:
        return getattr(obj, _FIELDS)  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError(f"{obj!r} is not a dataclass") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes`` (validated again by its ``__post_init__``)."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


def asdict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a dict, recursively through dataclasses, lists, tuples and dicts."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("asdict() takes a dataclass instance")
    return _asdict(obj)  # type: ignore[no-any-return]


def _asdict(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _asdict(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple keeps its type
        return type(value)(*(_asdict(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    return value
