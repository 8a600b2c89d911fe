"""What /proc/<pid>/stat says of a process: the one parser of that file."""

from __future__ import annotations

from hawser._dataclass import dataclass


@dataclass(frozen=True, slots=True)
class ProcStat:
    comm: str
    state: str        # R, S, D, Z (zombie), X (dead), ...
    start_time: int   # clock ticks after boot: with the pid, names one process for good

    @property
    def alive(self) -> bool:
        """Not a zombie: pid 1 does not reap orphans on every host, and a dead
        process nobody waited for keeps its pid and its stat file."""
        return self.state not in ("Z", "X")


def proc_stat(pid: int) -> ProcStat | None:
    """``pid``'s stat, or None once it is gone (or the file is not readable as one).
    comm may hold spaces and parentheses: it runs to the last ")"."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return ProcStat(comm=raw[raw.find("(") + 1:raw.rfind(")")], state=fields[0], start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None
