"""Xattrs of a layer's entries: which ones a layer may set, setting them
without following symlinks, and copying them from a lower layer's file.

The rules are in :mod:`hawser.images._apply`'s docstring: ``trusted.*`` and
``user.overlay.*`` are dropped; an attribute the filesystem or the file type
does not support is skipped.
"""

from __future__ import annotations

import errno
import os

from hawser.errors import InvalidArgument


def _keep_xattr(name: str) -> bool:
    return not (name.startswith("trusted.") or name.startswith("user.overlay."))


def _xattrs(pax: dict[str, bytes]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for key, value in pax.items():
        if key.startswith("SCHILY.xattr."):
            name = key[13:]
        elif key.startswith("LIBARCHIVE.xattr."):
            import base64
            import urllib.parse

            name = urllib.parse.unquote(key[17:])
            try:
                value = base64.b64decode(value + b"=" * (-len(value) % 4))
            except ValueError:
                raise InvalidArgument(f"layer tar has a malformed {key} record") from None
        else:
            continue
        if name and "\x00" not in name and _keep_xattr(name):
            out.append((name, value))
    return out


def _copy_xattrs(src_path: str, apply: _XattrSetter) -> None:
    try:
        names = os.listxattr(src_path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if not _keep_xattr(name):
            continue
        try:
            value = os.getxattr(src_path, name, follow_symlinks=False)
        except OSError:
            continue
        apply(name, value)


class _XattrSetter:
    """Sets an xattr on an open fd or on ``name`` in a directory fd (not following)."""

    __slots__ = ("_name", "_target")

    def __init__(self, target: int | str, name: str = "") -> None:
        self._target = target
        self._name = name

    def __call__(self, key: str, value: bytes) -> None:
        try:
            if isinstance(self._target, int):
                os.setxattr(self._target, key, value)
            else:
                os.setxattr(self._target, key, value, follow_symlinks=False)
        except OSError as e:
            # user.* is refused on symlinks and devices (EPERM); some filesystems lack xattrs.
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                return
            if e.errno in (errno.EINVAL, errno.E2BIG, errno.ERANGE):
                raise InvalidArgument(f"layer has an invalid xattr {key!r} ({len(value)} bytes): {e.strerror}") from e
            raise
