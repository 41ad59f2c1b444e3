"""Go's ``mime.TypeByExtension`` (Unix): its built-in table, then the system's ``globs2``/``mime.types``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MIME_GLOBS_FILES", "MIME_TYPES_FILES", "MimeTypes", "mime_type_by_extension", "mime_types"]

_BUILTIN_TYPES = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}
MIME_GLOBS_FILES = ("/usr/local/share/mime/globs2", "/usr/share/mime/globs2")
MIME_TYPES_FILES = ("/etc/mime.types", "/etc/apache2/mime.types", "/etc/apache/mime.types", "/etc/httpd/conf/mime.types")

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _media_type_with_charset(value: str) -> str | None:
    """Go's ``setExtensionType`` normalisation: text types get ``charset=utf-8``; None if invalid."""
    base, _, params = value.partition(";")
    media = base.strip().lower()
    major, slash, minor = media.partition("/")
    if not major or not set(major) <= _TOKEN or (slash and (not minor or not set(minor) <= _TOKEN)):
        return None
    if value.startswith("text/") and "charset=" not in params.lower():
        # Go re-formats the whole value as a type: with parameters that is not a token, so empty
        return "" if params or ";" in value else f"{major}/{minor}; charset=utf-8"
    return value


class MimeTypes:
    """Go's extension → type table: built-ins first, then the system's databases the way Go reads them."""

    def __init__(self, globs_files: Iterable[str] = MIME_GLOBS_FILES, types_files: Iterable[str] = MIME_TYPES_FILES) -> None:
        self.exact: dict[str, str] = dict(_BUILTIN_TYPES)
        self.lower: dict[str, str] = dict(_BUILTIN_TYPES)
        for path in globs_files:
            if self._load_globs(path):
                break
        else:
            for path in types_files:
                self._load_types(path)

    def _set(self, extension: str, media_type: str) -> None:
        normalised = _media_type_with_charset(media_type)
        if normalised is None:
            return
        self.exact[extension] = normalised
        self.lower[extension.lower()] = normalised

    def _load_globs(self, path: str) -> bool:
        """``globs2`` lines are ``weight:type:*.ext``; the first (heaviest) type of an extension wins."""
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        for line in lines:
            fields = line.split(":")
            if len(fields) < 3 or not fields[0] or len(fields[2]) < 3:
                continue
            if fields[0][0] == "#" or fields[2][0] != "*" or fields[2][1] != ".":
                continue
            extension = fields[2][1:]
            if any(ch in extension for ch in "?*[") or extension in self.exact:
                continue
            self._set(extension, fields[1])
        return True

    def _load_types(self, path: str) -> None:
        """``mime.types`` lines are ``type ext ext…``; later files override earlier entries."""
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:
            return
        for line in lines:
            fields = line.split()
            if len(fields) <= 1 or fields[0][0] == "#":
                continue
            for extension in fields[1:]:
                if extension[0] == "#":
                    break
                self._set("." + extension, fields[0])

    def by_extension(self, extension: str) -> str:
        if not extension:
            return ""
        found = self.exact.get(extension)
        if found is not None:
            return found
        return self.lower.get(extension.lower(), "")


_mime_types: MimeTypes | None = None


def mime_types() -> MimeTypes:
    """The process-wide table, read once (at config load)."""
    global _mime_types
    if _mime_types is None:
        _mime_types = MimeTypes()
    return _mime_types


def mime_type_by_extension(extension: str) -> str:
    """Go's ``mime.TypeByExtension``."""
    return mime_types().by_extension(extension)
