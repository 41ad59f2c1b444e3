"""Go's ``io/fs`` (``os``): a file's ``FileMode`` and a ``*PathError``'s text.

The file server's JSON listing reports each entry's mode as Go's ``FileMode`` bits, and its
errors carry Go's ``op path: reason`` text (``stat /srv/x: permission denied``).
"""

from __future__ import annotations

import stat

__all__ = ["file_mode", "path_error"]

# Go's FileMode bits for the file types (the permission bits are the same as Unix's)
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_DEVICE = 1 << 26
_MODE_NAMED_PIPE = 1 << 25
_MODE_SOCKET = 1 << 24
_MODE_SETUID = 1 << 23
_MODE_SETGID = 1 << 22
_MODE_CHAR_DEVICE = 1 << 21
_MODE_STICKY = 1 << 20


def file_mode(st_mode: int) -> int:
    """Go's ``fs.FileMode`` of a Unix ``st_mode``."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFDIR:
        mode |= _MODE_DIR
    elif kind == stat.S_IFLNK:
        mode |= _MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        mode |= _MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= _MODE_DEVICE | _MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        mode |= _MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= _MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= _MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _MODE_STICKY
    return mode


def path_error(op: str, path: str, error: BaseException) -> str:
    """``(&fs.PathError{op, path, err}).Error()``, e.g. ``stat /srv/x: permission denied``.

    Go's errno texts are the C library's with a lower-case first letter; an error without
    one (a NUL byte in the path) is Go's ``EINVAL``.
    """
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror[:1].lower() + error.strerror[1:]
    else:
        reason = "invalid argument"
    return f"{op} {path}: {reason}"
