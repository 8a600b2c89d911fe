"""How often hawserd has started on its state dir.

A process's counters start at 0 with it, so "how many times has hawserd
restarted" cannot live in memory.  hawserd keeps the count in
``state/daemon-starts`` (one decimal number, written atomically at each
start): it lives as long as the state dir (a tmpfs: until the next boot),
like the containers it describes, and reads as a counter that resets at a
reboot.  hawserd counts its start with the metrics endpoint off too: this
module imports no prometheus-client (~3 MB of a daemon's memory).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("hawser.metrics")

STARTS_FILE = "daemon-starts"


def record_start(state_dir: str) -> int:
    """Count one more start of hawserd on ``state_dir`` (``state/daemon-starts``)
    and return the count.  A count that cannot be read starts again at 1; one
    that cannot be written is logged, not fatal: it is a number on a dashboard."""
    from hawser.host import atomic_write

    path = os.path.join(state_dir, STARTS_FILE)
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        previous = int(text) if text.isdigit() else 0
    except (OSError, UnicodeDecodeError):
        previous = 0
    starts = previous + 1
    try:
        os.makedirs(state_dir, mode=0o711, exist_ok=True)
        atomic_write(path, f"{starts}\n", durable=False)  # a tmpfs: nothing to fsync for
    except OSError as exc:
        log.warning("cannot record hawserd's start", extra={"path": path, "error": str(exc)})
    return starts
