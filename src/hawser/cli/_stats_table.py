"""``hawser stats``' table, laid out as docker's: its columns, its sizes, its alignment."""

from __future__ import annotations

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

HEADER = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def stats_lines(rows: Sequence[Mapping[str, Any]], pids: Mapping[str, int]) -> list[str]:
    """The table of ``rows`` (``_stats``' dicts); ``pids`` maps a container id to its init's pid (NET I/O)."""
    total = host_memory()
    table = [HEADER]
    for row in rows:
        limit = row["memory_limit"] or total
        if total and limit > total:  # cgroup v1's "unlimited" is a huge number: docker shows the host's memory
            limit = total
        used = row["memory_working_set"]
        received, sent = net_io(pids.get(row["id"], 0))
        table.append((row["id"][:12], row["name"], f"{row['cpu_percent']:.2f}%",
                      f"{binary_size(used)} / {binary_size(limit)}",
                      f"{used * 100 / limit:.2f}%" if limit else "--",
                      f"{decimal_size(received)} / {decimal_size(sent)}",
                      f"{decimal_size(row['block_read'])} / {decimal_size(row['block_write'])}", str(row["pids"])))
    return tab_lines(table)


def tab_lines(table: Sequence[Sequence[str]]) -> list[str]:
    """Columns as docker's tabwriter lays them out (minimum width 10, padding 3)."""
    widths = [max(10, max(len(r[c]) for r in table) + 3) for c in range(len(table[0]))]
    return ["".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + r[-1] for r in table]


def decimal_size(n: float) -> str:
    """docker's ``units.HumanSizeWithPrecision(n, 3)``: 0B, 12kB, 1.23MB."""
    return _size(n, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"), 3)


def binary_size(n: float) -> str:
    """docker's ``units.BytesSize``: 1.5MiB, 7.617GiB."""
    return _size(n, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"), 4)


def _size(n: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.{precision}g}{units[i]}"


def net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the network namespace of process ``pid``, its loopback aside; (0, 0) if
    it has none but loopback, or is gone."""
    if pid <= 0:
        return 0, 0
    try:
        with open(f"/proc/{pid}/net/dev", encoding="ascii") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    received = sent = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        received += int(fields[0])
        sent += int(fields[8])
    return received, sent


def host_memory() -> int:
    """MemTotal in bytes; 0 if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
