"""The ``file`` matcher (``try_files``) and the file-system path rules it shares with ``file_server``.

A port of Caddy 2.6.2's ``fileserver/matcher.go`` and of the Go library
behaviour it relies on:

* ``sanitized_path_join`` is ``caddyhttp.SanitizedPathJoin``: the request path
  is cleaned as if it were absolute before it is joined to the root, so no
  ``..`` (decoded from ``%2e%2e`` or not) can climb out of the root;
* ``try_files`` entries are ``filepath.Glob`` patterns (``txcaddy._go.path``),
  with ``*``, ``?`` and ``[`` escaped in placeholder values so a request path
  cannot widen them;
* ``within_root`` is txcaddy's own rule on top of Caddy's (which follows every
  symlink): a path whose symlinks resolve outside the root does not exist.

Placeholders published on a match: ``http.matchers.file.relative``,
``.absolute``, ``.type`` (``file``/``directory``) and ``.remainder`` (what
``split_path`` cut off).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from zope.interface import implementer

from txcaddy._go.path import clean, glob
from txcaddy._go.strconv import NumError, atoi
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, STRING, STRINGS, Obj
from txcaddy.config.values import string
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.request import Request
from txcaddy.interfaces import IRequestMatcher

__all__ = [
    "FileMatcher",
    "RootGuard",
    "real_path",
    "sanitized_path_join",
    "within_root",
]

def sanitized_path_join(root: str, request_path: str) -> str:
    """Caddy's ``SanitizedPathJoin``: ``root`` joined with the request path cleaned as absolute.

    Whatever the request path holds (``..``, repeated slashes), the result is
    lexically inside ``root``; a trailing slash of the request path is kept.
    """
    if not root:
        root = "."
    joined = clean(root + "/" + clean("/" + request_path))
    if len(request_path) > 1 and request_path.endswith("/"):
        joined += "/"
    return joined


# -- symlinks must stay inside the root ----------------------------------------------------------

_PROC_FD = hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd")


def real_path(path: str, fd: int | None = None) -> str | None:
    """``path`` with every symlink resolved (of the open ``fd`` if given); None if it cannot be."""
    if _PROC_FD:
        try:
            if fd is not None:
                return os.readlink(f"/proc/self/fd/{fd}")
            opened = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None
        try:
            return os.readlink(f"/proc/self/fd/{opened}")
        except OSError:
            return None
        finally:
            os.close(opened)
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        return None


def within_root(real_root: str | None, path: str, fd: int | None = None) -> bool:
    """True when ``path`` (or the open ``fd``) really lies in the root whose real path is ``real_root``."""
    if real_root is None:
        return False
    resolved = real_path(path, fd)
    if resolved is None:
        return False
    if real_root == "/" or resolved == real_root:
        return True
    return resolved.startswith(real_root + "/")


# -- the matcher ------------------------------------------------------------------------------

FIRST_EXIST = "first_exist"
LARGEST_SIZE = "largest_size"
SMALLEST_SIZE = "smallest_size"
MOST_RECENTLY_MODIFIED = "most_recently_modified"
_POLICIES = ("", FIRST_EXIST, LARGEST_SIZE, SMALLEST_SIZE, MOST_RECENTLY_MODIFIED)

_GLOB_ESCAPES = str.maketrans({"*": "\\*", "[": "\\[", "?": "\\?"})


def _glob_safe(value: str) -> str:
    """Caddy's ``globSafeRepl``: placeholder values cannot add wildcards (backslashes are kept)."""
    return value.translate(_GLOB_ESCAPES)


def _error_status(entry: str) -> int | None:
    """Caddy's ``parseErrorCode``: ``=404`` asks for an error; anything else is a file."""
    if len(entry) > 1 and entry[0] == "=":
        try:
            code = atoi(entry[1:])
        except NumError:
            return None
        if 100 <= code <= 999:
            return code
    return None


def _equal_fold(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    if a.isascii() and b.isascii():
        return a.lower() == b.lower()
    try:
        sa, sb = a.decode("utf-8"), b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return sa.lower() == sb.lower() or sa.upper() == sb.upper()


class _Candidate:
    __slots__ = ("full", "relative", "remainder")

    def __init__(self, full: str, relative: str, remainder: str) -> None:
        self.full = full
        self.relative = relative
        self.remainder = remainder


class _Entry:
    """One ``try_files`` item, prepared at load time."""

    __slots__ = ("template", "directory", "error_status", "error_text")

    def __init__(self, text: str) -> None:
        self.template = Template(text)
        self.directory = text.endswith("/")
        self.error_status = _error_status(text)
        self.error_text = text[1:]


@implementer(IRequestMatcher)
class FileMatcher:
    """``http.matchers.file``: the request matches when one of ``try_files`` exists under the root."""

    def __init__(
        self,
        root: str = "",
        try_files: list[str] | None = None,
        try_policy: str = "",
        split_path: list[str] | None = None,
    ) -> None:
        if try_policy not in _POLICIES:
            raise ConfigError(f"unknown try policy {try_policy}")
        self.root = Template(root or "{http.vars.root}")
        # no list at all means the request path (as a placeholder: it sees rewrites)
        self.entries = tuple(_Entry(t) for t in (try_files if try_files is not None else ["{http.request.uri.path}"]))
        self.policy = try_policy or FIRST_EXIST
        self.split_path = tuple(s.encode("utf-8", "surrogateescape") for s in split_path or ())

    def _first_split(self, path: str) -> tuple[str, str]:
        """Caddy's ``firstSplit``: cut after a ``split_path`` value ending a path element."""
        if not self.split_path:
            return path, ""
        data = path.encode("utf-8", "surrogateescape")
        for split in self.split_path:
            size = len(split)
            # Caddy's indexFold stops one short of the end: a split value ending the path is not found
            for i in range(len(data) - size):
                if _equal_fold(data[i : i + size], split):
                    pos = i + size
                    if pos != len(data) and not data[pos:].startswith(b"/"):
                        break
                    return (data[:pos].decode("utf-8", "surrogateescape"),
                            data[pos:].decode("utf-8", "surrogateescape"))
        return path, ""

    def _candidates(self, entry: _Entry, root: str, request: Request) -> list[_Candidate]:
        expanded = entry.template.render(request, empty_unknown=True, transform=_glob_safe)
        before, after = self._first_split(clean(expanded))
        if entry.directory:
            before += "/"
        pattern = sanitized_path_join(root, before)
        return [_Candidate(full, full[len(root):] if full.startswith(root) else full, after) for full in glob(pattern)]

    def match(self, request: Request) -> bool:
        root = clean(self.root.render(request, empty_unknown=True, empty="."))
        guard = RootGuard(root)
        if self.policy == FIRST_EXIST:
            for entry in self.entries:
                if entry.error_status is not None:
                    raise HandlerError(entry.error_status, entry.error_text)
                for candidate in self._candidates(entry, root, request):
                    info = _stat(candidate.full)
                    if info is None:
                        continue
                    is_dir = stat.S_ISDIR(info.st_mode)
                    if is_dir != candidate.full.endswith("/"):
                        continue  # a trailing slash asks for a directory, its absence for a file
                    if not guard.contains(candidate.full):
                        continue
                    _publish(request, candidate, is_dir)
                    return True
            return False
        best: _Candidate | None = None
        best_info: os.stat_result | None = None
        for entry in self.entries:
            for candidate in self._candidates(entry, root, request):
                info = _stat(candidate.full)
                if info is None or not guard.contains(candidate.full):
                    continue
                if self.policy == LARGEST_SIZE:
                    better = info.st_size > (best_info.st_size if best_info is not None else 0)
                elif self.policy == SMALLEST_SIZE:
                    # Caddy's quirk kept: a size of 0 does not count as "smallest so far"
                    better = best_info is None or best_info.st_size == 0 or info.st_size < best_info.st_size
                else:
                    better = best_info is None or info.st_mtime_ns > best_info.st_mtime_ns
                if better:
                    best, best_info = candidate, info
        if best is None or best_info is None:
            return False
        _publish(request, best, stat.S_ISDIR(best_info.st_mode))
        return True

    def __repr__(self) -> str:
        return f"<FileMatcher try_files={[e.template.text for e in self.entries]!r} policy={self.policy}>"


class RootGuard:
    """The root's real path, resolved once per request on first need, and containment tests against it."""

    __slots__ = ("root", "_real", "_resolved")

    def __init__(self, root: str) -> None:
        self.root = root
        self._real: str | None = None
        self._resolved = False

    @property
    def real(self) -> str | None:
        if not self._resolved:
            self._resolved = True
            self._real = real_path(self.root)
        return self._real

    def contains(self, path: str, fd: int | None = None) -> bool:
        return within_root(self.real, path, fd)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _publish(request: Request, candidate: _Candidate, is_dir: bool) -> None:
    placeholders = request.placeholders
    placeholders["http.matchers.file.relative"] = candidate.relative
    placeholders["http.matchers.file.absolute"] = candidate.full
    placeholders["http.matchers.file.remainder"] = candidate.remainder
    placeholders["http.matchers.file.type"] = "directory" if is_dir else "file"


def _string_list(config: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return value


def _string(config: dict[str, Any], key: str, where: str) -> str:
    return string(config.get(key), f"{where}: {key}")


_MATCHER_KEYS = frozenset({"root", "try_files", "try_policy", "split_path", "file_system"})


@module("http.matchers.file", schema=Obj(
    {"root": STRING, "try_files": STRINGS, "try_policy": STRING, "split_path": STRINGS, "file_system": ANY},
))
def load_file_matcher(config: Any, context: Any) -> FileMatcher:
    where = "file matcher"
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected an object with root, try_files, try_policy, split_path")
    unknown = sorted(set(config) - _MATCHER_KEYS)
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    if config.get("file_system"):
        raise ConfigError(f"{where}: file_system modules are not supported; files come from the local disk")
    return FileMatcher(
        root=_string(config, "root", where),
        try_files=_string_list(config, "try_files", where),
        try_policy=_string(config, "try_policy", where),
        split_path=_string_list(config, "split_path", where),
    )
