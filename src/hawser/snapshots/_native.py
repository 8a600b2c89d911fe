"""The native snapshotter (after containerd's): every snapshot is a full copy
of its parent's tree, for hosts where overlayfs is unusable.

Copies are made with ``cp -a --reflink=auto`` (GNU coreutils): it keeps
owners, modes, timestamps, xattrs (trusted.* too, as root), device nodes and
hardlinks within the tree, and shares blocks on filesystems that can
(btrfs, xfs).  Mounts are bind mounts of the snapshot's own tree.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from hawser.errors import Internal, ResourceExhausted
from hawser.snapshots._store import Record, SnapshotterBase
from hawser.snapshots._types import ApplyTarget, Kind, Mount

# A copy of a large rootfs is slow on a slow disk, but not this slow.
COPY_TIMEOUT = 3600.0


class NativeSnapshotter(SnapshotterBase):
    """Snapshots as full directory copies under ``root``; see the module docstring."""

    name = "native"
    supports_rebase = False

    def _populate(self, tmp: str, kind: Kind, chain: Sequence[Record]) -> None:
        fs = os.path.join(tmp, "fs")
        if not chain:
            os.mkdir(fs, 0o755)
            return
        source = self._fs(chain[0])
        from hawser.host import ProcessTimedOut, run_process

        try:
            proc = run_process(["cp", "-a", "--reflink=auto", "-T", "--", source, fs], timeout=COPY_TIMEOUT)
        except ProcessTimedOut:
            raise Internal(f"copying snapshot {chain[0].key!r} took over {COPY_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip()[-2000:]
            if os.strerror(errno.ENOSPC) in message or os.strerror(errno.EDQUOT) in message:
                raise ResourceExhausted(f"no space left on device copying snapshot {chain[0].key!r}: {message}")
            raise Internal(f"copying snapshot {chain[0].key!r} failed: {message}")

    def _mounts(self, rec: Record, chain: Sequence[Record]) -> list[Mount]:
        mode = "ro" if rec.kind is Kind.VIEW else "rw"
        return [Mount(type="bind", source=self._fs(rec), options=("rbind", mode))]

    def _apply_target(self, rec: Record, chain: Sequence[Record]) -> ApplyTarget:
        return ApplyTarget(path=self._fs(rec), overlay_whiteouts=False, lowers=())
