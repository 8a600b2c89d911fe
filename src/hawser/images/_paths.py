"""Paths in a layer, checked lexically: a tar name as a clean relative path,
whether a symlink leads out of the tree, and the flags directories are opened
with.  The rules are in :mod:`hawser.images._apply`'s docstring (Safety).
"""

from __future__ import annotations

import os

from hawser.errors import InvalidArgument

# O_NOFOLLOW: a directory is never opened through a symlink.
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def normalise(name: str, what: str = "entry") -> str:
    """A tar path as a clean relative path ("" is the root).

    A leading "/" or "./" is dropped; ".." is resolved lexically and may not
    climb above the root. InvalidArgument for a NUL byte or an escape."""
    if "\x00" in name:
        raise InvalidArgument(f"layer {what} {name!r} contains a NUL byte")
    parts: list[str] = []
    for part in name.split("/"):
        if not part or part == ".":
            continue
        if part == "..":
            if not parts:
                raise InvalidArgument(f"layer {what} {name!r} points outside the root",
                                      hint="the layer is malformed or hostile")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _symlink_leaves(link_rel: str, target: str) -> bool:
    """Whether a symlink at ``link_rel`` pointing at ``target`` resolves, from
    the host's point of view, outside the tree (absolute, or too many ..)."""
    if target.startswith("/"):
        return True
    depth = link_rel.count("/")  # components of the symlink's directory
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


__all__ = ["normalise"]
