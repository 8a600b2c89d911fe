"""The default seccomp profile: its data file, and what it allows for which capabilities."""

from __future__ import annotations

import ctypes
import ctypes.util
from importlib import resources
from typing import Any

import pytest

from hawser.errors import InvalidArgument
from hawser.runtime._defaults import DEFAULT_CAPABILITIES
from hawser.runtime._seccomp import (
    SHIPPED_JSON,
    SHIPPED_TOML,
    default_profile,
    parse_profile,
    render_json,
    seccomp_spec,
)

EPERM, ENOSYS = 1, 38
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD = 0x100, 0x200, 0x400, 0x800, 0x10000
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWTIME = 0x20000, 0x10000000, 0x40000000, 0x20000000, 0x80
SIGCHLD = 17


def evaluate(spec: dict[str, Any], name: str, *args: int) -> tuple[str, int]:
    """What the filter does with syscall ``name(args...)``: ("allow", 0) or ("errno", n).
    Rules with args allow only when all their conditions hold (OCI semantics)."""
    for rule in spec["syscalls"]:
        if name not in rule["names"]:
            continue
        conds = rule.get("args", [])
        if not all(_holds(c, args) for c in conds):
            continue
        if rule["action"] == "SCMP_ACT_ALLOW":
            return "allow", 0
        return "errno", rule["errnoRet"]
    return "errno", spec["defaultErrnoRet"]


def _holds(cond: dict[str, Any], args: tuple[int, ...]) -> bool:
    arg = args[cond["index"]] if cond["index"] < len(args) else 0
    if cond["op"] == "SCMP_CMP_EQ":
        return bool(arg == cond["value"])
    if cond["op"] == "SCMP_CMP_MASKED_EQ":
        return bool(arg & cond["value"] == cond.get("valueTwo", 0))
    raise AssertionError(f"operator {cond['op']} not modelled")


def default_spec(*extra_caps: str, machine: str = "x86_64") -> dict[str, Any]:
    return seccomp_spec((*DEFAULT_CAPABILITIES, *extra_caps), machine=machine)


# --- the data file ----------------------------------------------------------------


def test_every_group_says_why() -> None:
    text = resources.files("hawser").joinpath("runtime/seccomp.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("[groups.")]
    assert len(headers) == len(default_profile().groups)
    for i in headers:
        assert lines[i - 1].startswith("#"), f"{lines[i]} has no comment saying why"


def _libseccomp() -> Any:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        pytest.fail("libseccomp is not installed (runc depends on libseccomp2: run scripts/setup.sh)")
    lib = ctypes.CDLL(name)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return lib


def test_every_syscall_name_is_known_to_libseccomp() -> None:
    """runc drops names libseccomp cannot resolve without a word: catch typos here.
    libseccomp knows every architecture's names (others resolve to pseudo numbers)."""
    lib = _libseccomp()
    unknown = [n for g in default_profile().groups for n in g.syscalls
               if lib.seccomp_syscall_resolve_name(n.encode()) == -1]  # __NR_SCMP_ERROR
    assert unknown == []


def test_a_name_libseccomp_does_not_know_is_detected() -> None:
    lib = _libseccomp()
    assert lib.seccomp_syscall_resolve_name(b"not_a_syscall") == -1
    assert lib.seccomp_syscall_resolve_name(b"clone") > 0


BLOCKED = [
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "swapon", "swapoff", "keyctl", "add_key", "request_key", "bpf", "ptrace",
    "process_vm_readv", "perf_event_open", "setns", "userfaultfd", "open_by_handle_at", "acct",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "syslog", "iopl", "ioperm", "quotactl",
    "nfsservctl", "lookup_dcookie", "vhangup", "io_uring_setup", "modify_ldt", "sethostname",
]


@pytest.mark.parametrize("name", BLOCKED)
def test_blocked_by_default(name: str) -> None:
    assert evaluate(default_spec(), name) == ("errno", EPERM)


@pytest.mark.parametrize("name", ["read", "write", "openat", "execve", "mmap", "futex", "socket", "epoll_wait",
                                  "clock_gettime", "exit_group", "getdents64", "statx", "rt_sigaction",
                                  "arch_prctl", "rseq", "prlimit64", "wait4", "chroot", "socketcall"])
def test_common_syscalls_allowed(name: str) -> None:
    assert evaluate(default_spec(), name) == ("allow", 0)


def test_unknown_syscall_gets_the_default_errno() -> None:
    spec = default_spec()
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec["defaultErrnoRet"] == EPERM
    assert evaluate(spec, "not_listed_anywhere") == ("errno", EPERM)


def test_clone_without_namespaces_only() -> None:
    spec = default_spec()
    thread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD
    assert evaluate(spec, "clone", thread) == ("allow", 0)
    assert evaluate(spec, "clone", SIGCHLD) == ("allow", 0)  # fork()
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID):
        assert evaluate(spec, "clone", SIGCHLD | flag) == ("errno", EPERM)


def test_unshare_without_namespaces_only() -> None:
    spec = default_spec()
    assert evaluate(spec, "unshare", CLONE_FS | CLONE_FILES) == ("allow", 0)
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWTIME):
        assert evaluate(spec, "unshare", flag) == ("errno", EPERM)


def test_clone3_returns_enosys_so_libc_falls_back() -> None:
    assert evaluate(default_spec(), "clone3") == ("errno", ENOSYS)


@pytest.mark.parametrize(("persona", "allowed"),
                         [(0, True), (8, True), (0x20000, True), (0x20008, True), (0xFFFFFFFF, True),
                          (0x0040000, False), (0x0400000, False), (0x0004, False)])
def test_personality_values(persona: int, allowed: bool) -> None:
    assert (evaluate(default_spec(), "personality", persona)[0] == "allow") is allowed


@pytest.mark.parametrize(
    ("cap", "syscalls"),
    [
        ("CAP_SYS_ADMIN", ["mount", "umount2", "pivot_root", "setns", "swapon", "clone3", "sethostname"]),
        ("CAP_SYS_PTRACE", ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"]),
        ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
        ("CAP_SYS_BOOT", ["reboot", "kexec_load"]),
        ("CAP_SYS_TIME", ["settimeofday", "clock_settime", "adjtimex"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
        ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ],
)
def test_capabilities_reallow_their_syscalls(cap: str, syscalls: list[str]) -> None:
    without, with_cap = default_spec(), default_spec(cap)
    for name in syscalls:
        assert evaluate(without, name)[0] == "errno", name
        assert evaluate(with_cap, name) == ("allow", 0), name


def test_sys_admin_lifts_the_clone_filter() -> None:
    spec = default_spec("CAP_SYS_ADMIN")
    assert evaluate(spec, "clone", CLONE_NEWUSER | SIGCHLD) == ("allow", 0)
    assert evaluate(spec, "unshare", CLONE_NEWUSER) == ("allow", 0)


def test_never_reallowed() -> None:
    spec = default_spec("CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE")
    for name in ("keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup", "nfsservctl"):
        assert evaluate(spec, name) == ("errno", EPERM), name


def test_architectures() -> None:
    assert default_spec()["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_spec(machine="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "architectures" not in default_spec(machine="riscv64")  # native ABI only


def test_machine_specific_groups() -> None:
    x86, arm = default_spec(), default_spec(machine="aarch64")
    assert evaluate(x86, "arch_prctl") == ("allow", 0)
    assert evaluate(arm, "arch_prctl") == ("errno", EPERM)
    assert evaluate(arm, "set_tls") == ("allow", 0)
    assert evaluate(x86, "set_tls") == ("errno", EPERM)
    assert evaluate(default_spec("CAP_SYS_RAWIO", machine="aarch64"), "iopl") == ("errno", EPERM)


def test_spec_shape() -> None:
    spec = default_spec()
    assert list(spec) == ["defaultAction", "defaultErrnoRet", "architectures", "syscalls"]
    for rule in spec["syscalls"]:
        assert rule["names"] and rule["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO")
        assert set(rule) <= {"names", "action", "args", "errnoRet"}
        assert ("errnoRet" in rule) == (rule["action"] == "SCMP_ACT_ERRNO")
    names = [n for rule in spec["syscalls"] if "args" not in rule for n in rule["names"]]
    assert len(names) == len(set(names))


# --- parse_profile's checks ------------------------------------------------------

GOOD = """
[groups.a]
action = "allow"
syscalls = ["read"]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("", "no [groups.*] tables"),
        ('bogus = 1\n' + GOOD, "unknown keys ['bogus']"),
        ('default_errno = "EWHAT"\n' + GOOD, "unknown errno 'EWHAT'"),
        ('[groups.a]\naction = "maybe"\nsyscalls = ["read"]\n', "action must be one of"),
        ('[groups.a]\naction = "allow"\nsyscalls = []\n', "syscalls must be non-empty"),
        ('[groups.a]\naction = "allow"\nsyscalls = ["read", "read"]\n', "without repeats"),
        ('[groups.a]\naction = "allow"\nsyscalls = ["read"]\ncolour = "red"\n', "unknown keys ['colour']"),
        (GOOD + '[groups.b]\naction = "block"\nsyscalls = ["read"]\n', "'read' is in groups 'a' and 'b'"),
        ('[groups.a]\naction = "block"\ncaps = ["CAP_WIZARD"]\nsyscalls = ["mount"]\n', "unknown capability"),
        ('[groups.a]\naction = "allow"\ncaps = ["CAP_SYS_ADMIN"]\nsyscalls = ["mount"]\n', "change nothing"),
        ('[groups.a]\naction = "errno"\nsyscalls = ["clone3"]\n', "errno is required"),
        ('[groups.a]\naction = "block"\nerrno = "ENOSYS"\nsyscalls = ["x"]\n', "errno is required"),
        ('[groups.a]\naction = "block"\nsyscalls = ["clone"]\nargs = [[{index = 0, value = 1, op = "SCMP_CMP_EQ"}]]\n',
         "args only make sense"),
        ('[groups.a]\naction = "allow"\nsyscalls = ["clone"]\nargs = [[{index = 9, value = 1, op = "SCMP_CMP_EQ"}]]\n',
         "index 0-5"),
        ('[groups.a]\naction = "allow"\nsyscalls = ["clone"]\nargs = [[{index = 0, value = 1, op = "LIKE"}]]\n',
         "unknown operator"),
        ('[groups.a]\naction = "allow"\nsyscalls = ["clone"]\nargs = [[]]\n', "non-empty lists"),
    ],
)
def test_parse_profile_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_profile(text)
    assert message in info.value.message


def test_parse_profile_minimal() -> None:
    profile = parse_profile(GOOD)
    assert profile.default_errno == "EPERM"
    assert seccomp_spec([], machine="x86_64", profile=profile) == {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
    }


def test_hex_values_in_the_data_file_match_the_comments() -> None:
    clone = default_profile().group("clone").args[0][0]
    assert clone.value == CLONE_NEWNS | 0x02000000 | 0x04000000 | 0x08000000 | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
    assert default_profile().group("unshare").args[0][0].value == clone.value | CLONE_NEWTIME


def test_shipped_json_is_rendered_from_the_toml() -> None:
    # seccomp.json is what containers load; edit seccomp.toml, then run
    # `python -m hawser.runtime._seccomp` to regenerate it.
    with open(SHIPPED_TOML, encoding="utf-8") as f:
        expected = render_json(f.read())
    with open(SHIPPED_JSON, encoding="utf-8") as f:
        assert f.read() == expected, "seccomp.json is stale: run python -m hawser.runtime._seccomp"
