"""Snapshotters: overlayfs, and a native copying fallback where overlayfs is missing."""

from hawser.snapshots._types import ApplyTarget, Info, Kind, Mount, Snapshotter, Usage

__all__ = ["ApplyTarget", "Info", "Kind", "Mount", "Snapshotter", "Usage"]
