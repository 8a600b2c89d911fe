"""The default seccomp profile: groups of syscalls read from ``seccomp.toml``
and turned into the ``linux.seccomp`` section of a runtime spec for a given
capability set and host architecture.

The data file says what is allowed or refused and why; this module only checks
its shape and renders it.  See the comments at the top of seccomp.toml.

seccomp.toml is the source people edit; ``seccomp.json`` beside it is the same
document as JSON, which is what a container start loads: importing tomllib and
parsing costs a few milliseconds of every ``hawser run``.  After editing the
TOML, regenerate it with ``python -m hawser.runtime._seccomp``; a unit test fails
while the two disagree.
"""

from __future__ import annotations

import errno as _errno
import functools
import json
import os
from collections.abc import Collection, Mapping

from hawser._dataclass import dataclass
from hawser.errors import Internal, InvalidArgument
from hawser.runtime._defaults import ALL_CAPABILITIES

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

_ACTIONS = ("allow", "block", "errno")
_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
              "SCMP_CMP_MASKED_EQ")
_GROUP_KEYS = {"action", "syscalls", "caps", "machines", "args", "errno"}
_ARG_KEYS = {"index", "value", "value_two", "op"}


@dataclass(frozen=True, slots=True)
class SyscallArg:
    """One condition on a syscall argument (OCI ``linux.seccomp.syscalls[].args[]``)."""

    index: int
    value: int
    value_two: int
    op: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "value": self.value, "op": self.op}
        if self.value_two:
            out["valueTwo"] = self.value_two
        elif self.op == "SCMP_CMP_MASKED_EQ":
            out["valueTwo"] = 0  # explicit: (arg & value) == 0 is the point of the rule
        return out


@dataclass(frozen=True, slots=True)
class SyscallGroup:
    """A named set of syscalls with one treatment (see seccomp.toml)."""

    name: str
    action: str  # allow | block | errno
    syscalls: tuple[str, ...]
    caps: frozenset[str] = frozenset()
    machines: tuple[str, ...] = ()
    args: tuple[tuple[SyscallArg, ...], ...] = ()  # alternatives; each one's conditions all hold
    errno: str = ""


@dataclass(frozen=True, slots=True)
class SeccompProfile:
    default_errno: str
    architectures: Mapping[str, tuple[str, ...]]
    groups: tuple[SyscallGroup, ...]

    def group(self, name: str) -> SyscallGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


def _errno_number(name: str, where: str) -> int:
    number = getattr(_errno, name, None)
    if not name.startswith("E") or not isinstance(number, int):
        raise InvalidArgument(f"seccomp profile: {where}: unknown errno {name!r}")
    return number


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"seccomp profile: {where} must be a list of non-empty strings")
    return tuple(value)


def _parse_arg(obj: Any, where: str) -> SyscallArg:
    if not isinstance(obj, dict) or set(obj) - _ARG_KEYS or not {"index", "value", "op"} <= set(obj):
        raise InvalidArgument(f"seccomp profile: {where}: an argument needs index, value, op (and maybe value_two)")
    index, value, value_two, op = obj["index"], obj["value"], obj.get("value_two", 0), obj["op"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, value, value_two)):
        raise InvalidArgument(f"seccomp profile: {where}: index and values must be integers")
    if not 0 <= index <= 5 or not 0 <= value < 1 << 64 or not 0 <= value_two < 1 << 64:
        raise InvalidArgument(f"seccomp profile: {where}: index 0-5 and 64-bit unsigned values expected")
    if op not in _OPERATORS:
        raise InvalidArgument(f"seccomp profile: {where}: unknown operator {op!r}")
    return SyscallArg(index=index, value=value, value_two=value_two, op=op)


def _parse_group(name: str, obj: Any) -> SyscallGroup:
    where = f"group {name!r}"
    if not isinstance(obj, dict):
        raise InvalidArgument(f"seccomp profile: {where} must be a table")
    unknown = set(obj) - _GROUP_KEYS
    if unknown:
        raise InvalidArgument(f"seccomp profile: {where}: unknown keys {sorted(unknown)}")
    action = obj.get("action")
    if action not in _ACTIONS:
        raise InvalidArgument(f"seccomp profile: {where}: action must be one of {', '.join(_ACTIONS)}")
    syscalls = _str_list(obj.get("syscalls"), f"{where}.syscalls")
    if not syscalls or len(set(syscalls)) != len(syscalls):
        raise InvalidArgument(f"seccomp profile: {where}: syscalls must be non-empty and without repeats")
    caps = _str_list(obj.get("caps", []), f"{where}.caps")
    for cap in caps:
        if cap not in ALL_CAPABILITIES:
            raise InvalidArgument(f"seccomp profile: {where}: unknown capability {cap!r}")
    machines = _str_list(obj.get("machines", []), f"{where}.machines")
    raw_args = obj.get("args", [])
    if not isinstance(raw_args, list) or not all(isinstance(alt, list) and alt for alt in raw_args):
        raise InvalidArgument(f"seccomp profile: {where}.args must be a list of non-empty lists")
    args = tuple(tuple(_parse_arg(a, where) for a in alt) for alt in raw_args)
    if args and action != "allow":
        raise InvalidArgument(f"seccomp profile: {where}: args only make sense on allowed syscalls")
    if action == "allow" and caps and not args:
        raise InvalidArgument(f"seccomp profile: {where}: caps on an unconditional allow change nothing")
    errno_name = obj.get("errno", "")
    if (action == "errno") != bool(errno_name):
        raise InvalidArgument(f"seccomp profile: {where}: errno is required with action errno, and only then")
    if errno_name:
        _errno_number(errno_name, where)
    return SyscallGroup(name=name, action=action, syscalls=syscalls, caps=frozenset(caps), machines=machines,
                        args=args, errno=errno_name)


def load_toml(text: str) -> dict[str, Any]:
    """The document of a profile in seccomp.toml's format, unchecked."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"seccomp profile is not valid TOML: {exc}") from None


def parse_profile(text: str) -> SeccompProfile:
    """Parse and check a profile in seccomp.toml's format.

    Raises InvalidArgument naming the group and field that is wrong, or a
    syscall listed in two groups.
    """
    return profile_from_document(load_toml(text))


def profile_from_document(doc: Mapping[str, Any]) -> SeccompProfile:
    """Check a profile document (TOML or its JSON rendering); see parse_profile."""
    unknown = set(doc) - {"default_errno", "architectures", "groups"}
    if unknown:
        raise InvalidArgument(f"seccomp profile: unknown keys {sorted(unknown)}")
    default_errno = doc.get("default_errno", "EPERM")
    if not isinstance(default_errno, str):
        raise InvalidArgument("seccomp profile: default_errno must be a string")
    _errno_number(default_errno, "default_errno")
    arches_obj = doc.get("architectures", {})
    if not isinstance(arches_obj, dict):
        raise InvalidArgument("seccomp profile: architectures must be a table")
    architectures = {machine: _str_list(v, f"architectures.{machine}") for machine, v in arches_obj.items()}
    groups_obj = doc.get("groups", {})
    if not isinstance(groups_obj, dict) or not groups_obj:
        raise InvalidArgument("seccomp profile: no [groups.*] tables")
    groups = tuple(_parse_group(name, obj) for name, obj in groups_obj.items())
    seen: dict[str, str] = {}
    for g in groups:
        for name in g.syscalls:
            if name in seen:
                raise InvalidArgument(f"seccomp profile: syscall {name!r} is in groups {seen[name]!r} and {g.name!r}")
            seen[name] = g.name
    return SeccompProfile(default_errno=default_errno, architectures=architectures, groups=groups)


SHIPPED_TOML = os.path.join(os.path.dirname(__file__), "seccomp.toml")
SHIPPED_JSON = os.path.join(os.path.dirname(__file__), "seccomp.json")


def render_json(toml_text: str) -> str:
    """seccomp.json's content for a seccomp.toml text (checked first)."""
    doc = load_toml(toml_text)
    profile_from_document(doc)
    return json.dumps(doc, indent=1) + "\n"


@functools.cache
def default_profile() -> SeccompProfile:
    """hawser's shipped profile (seccomp.json, rendered from seccomp.toml), parsed once."""
    with open(SHIPPED_JSON, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        return profile_from_document(doc)
    except InvalidArgument as exc:
        raise Internal(f"the shipped {exc.message}") from None


def seccomp_spec(capabilities: Collection[str], *, machine: str,
                 profile: SeccompProfile | None = None) -> dict[str, Any]:
    """Render ``linux.seccomp`` for a container holding ``capabilities`` (CAP_* names)
    on a host whose ``uname -m`` is ``machine``.

    A group whose ``caps`` intersect ``capabilities`` is allowed outright.  On a
    machine the profile lists no architectures for, only the native ABI is
    filtered (runc's default).  Raises nothing for valid profiles.
    """
    profile = profile or default_profile()
    held = frozenset(capabilities)
    rules: list[dict[str, Any]] = []
    for group in profile.groups:
        if group.machines and machine not in group.machines:
            continue
        names = list(group.syscalls)
        if group.caps & held or (group.action == "allow" and not group.args):
            rules.append({"names": names, "action": "SCMP_ACT_ALLOW"})
        elif group.action == "allow":
            for alternative in group.args:
                rules.append({"names": names, "action": "SCMP_ACT_ALLOW",
                              "args": [a.to_json() for a in alternative]})
        elif group.action == "errno":
            rules.append({"names": names, "action": "SCMP_ACT_ERRNO",
                          "errnoRet": _errno_number(group.errno, group.name)})
        # "block": the default action refuses them; nothing to emit.
    spec: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": _errno_number(profile.default_errno, "default_errno"),
    }
    arches = profile.architectures.get(machine)
    if arches:
        spec["architectures"] = list(arches)
    spec["syscalls"] = rules
    return spec


if __name__ == "__main__":
    # Regenerate seccomp.json after editing seccomp.toml.
    with open(SHIPPED_TOML, encoding="utf-8") as src:
        rendered = render_json(src.read())
    with open(SHIPPED_JSON, "w", encoding="utf-8") as dst:
        dst.write(rendered)
