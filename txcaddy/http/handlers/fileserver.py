"""``file_server``: static files, directory listings and precompressed sidecars.

A port of Caddy 2.6.2's ``fileserver/staticfiles.go`` and ``browse.go``, with
the HTTP semantics of Go's ``http.ServeContent`` that Caddy hands the file to:

* the file is ``SanitizedPathJoin(root, path)``; the root is the handler's
  ``root`` or ``{http.vars.root}`` or ``.``. Missing files are 404 (or the next
  handler with ``pass_thru``), unreadable ones 403, others 500/503;
* txcaddy adds one rule Caddy does not have: a file or directory reached
  through a symlink that resolves outside the root is treated as missing, and
  only regular files are served (a FIFO or device would block the reactor);
* directories: index files, else a ``browse`` listing (HTML, or JSON for
  ``Accept: application/json``), else 404; canonical-URI redirects (308) as
  Caddy does them, based on the original request path;
* ``hide`` follows Caddy's ``fileHidden``: entries without ``/`` hide any path
  element they glob-match, entries with ``/`` are absolute-path prefixes/globs;
* ``precompressed`` sidecars (``.br``, ``.gz``, ``.zst``) by ``Accept-Encoding``;
* ``Content-Type`` comes from the extension through Go's ``mime`` table (its
  built-ins, then the system's ``globs2``/``mime.types`` as Go reads them); an
  unknown extension gets no Content-Type at all (Caddy forbids sniffing);
* ``Last-Modified``, Caddy's ``ETag``, ``If-Match``/``If-None-Match``/
  ``If-Modified-Since``/``If-Unmodified-Since``/``If-Range``, single and
  multiple ``Range`` requests (multipart/byteranges) as Go answers them;
* the status can be overridden (``status_code``, placeholders allowed), and
  inside error routes the error's status is used, for every status
  ServeContent would have written — as Caddy's wrapper does.

Bodies are streamed from the file in large chunks by a pull producer; a small
file is written at once (``_filebody``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from itertools import islice
from typing import Any
from urllib.parse import quote

from zope.interface import implementer

from txcaddy._go.fs import file_mode, path_error
from txcaddy._go.http import http_date, request_cookies
from txcaddy._go.json import encode_plain
from txcaddy._go.mime import mime_type_by_extension, mime_types
from txcaddy._go.path import abs_path, clean, compile_pattern, ext
from txcaddy._go.path import base as path_base
from txcaddy._go.strconv import NumError, atoi
from txcaddy._go.url import BAD_ESCAPE, parse_query, path_unescape
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import lookup, module
from txcaddy.config.schema import ANY, BOOL, STRING, STRINGS, ModuleMap, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.handlers._browse import (
    _PATH_SAFE,
    _SORTS,
    SORT_NAME_DIR_FIRST,
    _Item,
    _Listing,
    human_size,  # noqa: F401
    render_listing_html,
)
from txcaddy.http.handlers._conditional import (
    _Preconditions,
    _RangeError,
    calculate_etag,
    parse_range,
)
from txcaddy.http.handlers._filebody import (
    CHUNK_SIZE,  # noqa: F401 - importable from here, as before the split
    send_pieces,
)
from txcaddy.http.handlers._filematch import (
    RootGuard,
    sanitized_path_join,
    within_root,
)
from txcaddy.http.handlers.encode import accepted_encodings
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["FileServer", "Precompressed", "calculate_etag", "mime_type_by_extension"]

DEFAULT_INDEX_NAMES = ("index.html", "index.txt")
_BROWSE_LIMIT = 10000  # entries Caddy reads from a directory for a listing

# -- hiding files ---------------------------------------------------------------------------------


class _Hide:
    """A ``hide`` entry as used for one request (placeholders replaced, absolute if it has a ``/``)."""

    __slots__ = ("text", "has_separator", "pattern")

    def __init__(self, text: str) -> None:
        self.has_separator = "/" in text
        self.text = abs_path(text) if self.has_separator else text
        self.pattern = compile_pattern(self.text)


def file_hidden(filename: str, hide: tuple[_Hide, ...] | list[_Hide]) -> bool:
    """Caddy's ``fileHidden`` for a file-system path."""
    if not hide:
        return False
    filename = abs_path(filename)
    components: list[str] | None = None
    for entry in hide:
        pattern = entry.pattern
        if not entry.has_separator:
            if components is None:
                components = filename.split("/")
            for component in components:
                if pattern.match(component):
                    return True
        elif filename.startswith(entry.text) and filename[len(entry.text):].startswith("/"):
            return True
        if pattern.match(filename):
            return True
    return False


# -- precompressed sidecars ---------------------------------------------------------------------


class Precompressed:
    """An ``http.precompressed.*`` module: the encoding it answers and the sidecar's suffix."""

    def __init__(self, encoding: str, suffix: str) -> None:
        self.encoding = encoding
        self.suffix = suffix


@module("http.precompressed.gzip")
def load_precompressed_gzip(config: Any, context: Any) -> Precompressed:
    return Precompressed("gzip", ".gz")


@module("http.precompressed.br")
def load_precompressed_br(config: Any, context: Any) -> Precompressed:
    return Precompressed("br", ".br")


@module("http.precompressed.zstd")
def load_precompressed_zstd(config: Any, context: Any) -> Precompressed:
    return Precompressed("zstd", ".zst")


# -- redirects ----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def _hex_escape_non_ascii(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    if data.isascii():
        return text
    return "".join(chr(b) if b < 0x80 else "%" + format(b, "x") for b in data)


def redirect(request: Request, response: Response, to: str, status: int = 308) -> None:
    """Caddy's ``redirect`` (no path-based open redirects) through Go's ``http.Redirect``."""
    while to.startswith("//"):
        to = to[1:]
    url = to
    if _CONTROL.search(url) is None and BAD_ESCAPE.search(url) is None:  # url.Parse succeeds
        if not url.startswith("/"):
            old = request.path or "/"
            url = old[: old.rfind("/") + 1] + url
        url, mark, query = url.partition("?")
        trailing = url.endswith("/")
        url = clean(url)
        if trailing and not url.endswith("/"):
            url += "/"
        url += mark + query
    headers = response.headers
    had_type = "Content-Type" in headers
    headers.set("Location", _hex_escape_non_ascii(url))
    if not had_type and request.method in ("GET", "HEAD"):
        headers.set("Content-Type", "text/html; charset=utf-8")
    response.write_head(status)
    if not had_type and request.method == "GET":
        body = f'<a href="{url.translate(_HTML_ESCAPES)}">Permanent Redirect</a>.\n\n'
        response.write(body.encode("utf-8", "surrogateescape"))


# -- the handler ---------------------------------------------------------------------------------


def _is_not_exist(error: OSError) -> bool:
    return error.errno == errno.ENOENT


def _is_permission(error: OSError) -> bool:
    return error.errno in (errno.EACCES, errno.EPERM)


@implementer(IHandler)
class FileServer:
    """``http.handlers.file_server``."""

    def __init__(
        self,
        root: str = "",
        hide: list[str] | None = None,
        index_names: list[str] | None = None,
        browse: bool = False,
        canonical_uris: bool = True,
        status: Template | None = None,
        pass_thru: bool = False,
        precompressed: dict[str, Precompressed] | None = None,
        precompressed_order: list[str] | None = None,
    ) -> None:
        self.root = Template(root or "{http.vars.root}")
        hide = hide or []
        self._hide_templates = tuple(Template(h) for h in hide)
        # Caddy makes static entries with a separator absolute once, at provisioning
        self._static_hide: tuple[_Hide, ...] | None = (
            tuple(_Hide(t.text) for t in self._hide_templates) if all(t.is_static for t in self._hide_templates) else None
        )
        names = DEFAULT_INDEX_NAMES if index_names is None else index_names
        self.index_names = tuple(Template(n) for n in names)
        self.browse = browse
        self.canonical_uris = canonical_uris
        self.status = status
        self.pass_thru = pass_thru
        self.precompressed = dict(precompressed or {})
        self.precompressed_order = list(precompressed_order or [])
        self.mime = mime_types()

    # -- helpers ---------------------------------------------------------------------------

    def _hide_list(self, request: Request, response: Response) -> tuple[_Hide, ...]:
        if self._static_hide is not None:
            return self._static_hide
        return tuple(_Hide(t.render(request, response, empty_unknown=True)) for t in self._hide_templates)

    def _not_found(self, request: Request, response: Response, next: Any) -> Any:
        if self.pass_thru:
            return next(request, response)
        raise HandlerError(404)

    def _map_dir_open_error(self, error: OSError, name: str) -> OSError | None:
        """Go's ``mapDirOpenError``: None (does not exist) when a path element is not a directory."""
        if _is_not_exist(error) or _is_permission(error):
            return error
        parts = name.split("/")
        for i, part in enumerate(parts):
            if not part:
                continue
            try:
                info = os.stat("/".join(parts[: i + 1]))
            except (OSError, ValueError):
                return error
            if not stat.S_ISDIR(info.st_mode):
                return None
        return error

    def _stat_failed(self, error: BaseException, filename: str, request: Request, response: Response, next: Any) -> Any:
        if isinstance(error, ValueError):  # a NUL byte: Go's stat fails with EINVAL, a 500
            raise HandlerError(500, path_error("stat", filename, error), cause=error)
        assert isinstance(error, OSError)
        mapped = self._map_dir_open_error(error, filename)
        if mapped is None or _is_not_exist(mapped):
            return self._not_found(request, response, next)
        if _is_permission(mapped):
            raise HandlerError(403, path_error("stat", filename, mapped), cause=mapped)
        raise HandlerError(500, path_error("stat", filename, mapped), cause=mapped)

    def _open(self, filename: str, response: Response, directory: bool = False) -> int:
        """Caddy's ``openFile``: 404, 403, or 503 with ``Retry-After`` when the open fails."""
        try:
            flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            if directory:
                flags |= getattr(os, "O_DIRECTORY", 0)
            return os.open(filename, flags)
        except ValueError as error:
            raise HandlerError(404, path_error("open", filename, error), cause=error) from None
        except OSError as error:
            mapped = self._map_dir_open_error(error, filename)
            if mapped is None or _is_not_exist(mapped):
                raise HandlerError(404, path_error("open", filename, error), cause=error) from None
            if _is_permission(mapped):
                raise HandlerError(403, path_error("open", filename, error), cause=error) from None
            # maybe out of file descriptors: let clients come back a little later, not all at once
            response.headers.set("Retry-After", str(2 + secrets.randbelow(3)))
            raise HandlerError(503, path_error("open", filename, error), cause=error) from None

    def _override_status(self, request: Request, response: Response) -> int:
        override = 0
        error = request.error
        if error is not None:
            override = 500
            status = getattr(error, "status", 0)
            if status and status > 0:
                override = status
        if self.status is not None:
            text = self.status.render(request, response, empty_unknown=True)
            try:
                override = atoi(text)
            except NumError as e:
                raise HandlerError(500, str(e)) from None
        if override > 0 and not 100 <= override <= 999:
            raise AbortConnection()  # Go's WriteHeader panics on such a code
        return override

    # -- serving -----------------------------------------------------------------------------

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        hide = self._hide_list(request, response)
        root = self.root.render(request, response, empty_unknown=True, empty=".")
        filename = sanitized_path_join(root, request.path)
        try:
            info = os.stat(filename)
        except (OSError, ValueError) as error:
            return self._stat_failed(error, filename, request, response, next)

        implicit_index = False
        if stat.S_ISDIR(info.st_mode) and self.index_names:
            for template in self.index_names:
                index_path = sanitized_path_join(filename, template.render(request, response, empty_unknown=True))
                if file_hidden(index_path, hide):
                    continue
                try:
                    index_info = os.stat(index_path)
                except (OSError, ValueError):
                    continue
                info, filename, implicit_index = index_info, index_path, True
                break

        real_root = RootGuard(root)
        if stat.S_ISDIR(info.st_mode):
            if self.browse and not file_hidden(filename, hide):
                return self._serve_browse(real_root, filename, hide, request, response, next)
            return self._not_found(request, response, next)

        if file_hidden(filename, hide):
            return self._not_found(request, response, next)

        if self.canonical_uris:
            original = request.orig_path
            # only when the file name itself was not rewritten (no redirect loops)
            if path_base(original) == path_base(request.path):
                if implicit_index and not original.endswith("/"):
                    return redirect(request, response, original + "/")
                if not implicit_index and original.endswith("/"):
                    return redirect(request, response, original[:-1])

        fd = -1
        etag = ""
        size = 0
        for encoding in accepted_encodings(request.headers, self.precompressed_order) if self.precompressed else ():
            sidecar = self.precompressed.get(encoding)
            if sidecar is None:
                continue
            compressed_name = filename + sidecar.suffix
            try:
                if stat.S_ISDIR(os.stat(compressed_name).st_mode):
                    continue
                opened = self._open(compressed_name, response)
            except (OSError, ValueError):
                continue
            except HandlerError as error:
                if error.status == 503:
                    raise
                continue
            compressed_info = self._usable(opened, compressed_name, real_root)
            if compressed_info is None:
                continue
            if not real_root.contains(filename):  # the sidecar of a file outside the root
                os.close(opened)
                return self._not_found(request, response, next)
            fd = opened
            headers = response.headers
            headers.set("Content-Encoding", sidecar.encoding)
            headers.delete("Accept-Ranges")
            headers.add("Vary", "Accept-Encoding")
            etag = calculate_etag(compressed_info)
            size = compressed_info.st_size
            break

        if fd < 0:
            try:
                fd = self._open(filename, response)
            except HandlerError as error:
                if error.status == 404:
                    return self._not_found(request, response, next)
                raise
            opened_info = self._usable(fd, filename, real_root)
            if opened_info is None:
                return self._not_found(request, response, next)
            info = opened_info
            etag = calculate_etag(info)
            size = info.st_size

        try:
            headers = response.headers
            headers.set("Etag", etag)
            if not headers.get("Content-Type"):
                content_type = self.mime.by_extension(ext(filename))
                if content_type:
                    headers.set("Content-Type", content_type)
                else:
                    headers.delete("Content-Type")  # Caddy: no sniffing either
            override = self._override_status(request, response)
        except BaseException:
            os.close(fd)
            raise
        return self._serve_content(request, response, fd, info.st_mtime_ns, size, override)

    def _usable(self, fd: int, filename: str, real_root: RootGuard) -> os.stat_result | None:
        """The open file's details if it may be served (a regular file inside the root); else closes it."""
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and within_root(real_root.real, filename, fd):
                return info
        except OSError:
            pass
        os.close(fd)
        return None

    def _serve_content(self, request: Request, response: Response, fd: int, modified_ns: int, size: int, override: int) -> Any:
        """Go's ``serveContent`` for an open file of ``size`` bytes; always closes ``fd``."""
        handed_over = False
        try:
            pieces, send_size = self._content_head(request, response, modified_ns, size, override)
            if pieces and send_size and request.method != "HEAD":
                handed_over = True
        finally:
            if not handed_over:
                os.close(fd)
        return send_pieces(fd, pieces, send_size, response) if handed_over else None

    def _content_head(
        self, request: Request, response: Response, modified_ns: int, size: int, override: int
    ) -> tuple[list[bytes | tuple[int, int]], int]:
        """Answer preconditions and ranges, write the head; the body still to send and its size."""
        headers = response.headers

        def write_head(status: int) -> None:
            response.write_head(override if override > 0 else status)

        if modified_ns != 0:
            headers.set("Last-Modified", http_date(modified_ns // 1_000_000_000))
        checked = _Preconditions(request, headers, modified_ns)
        if checked.status == 412:
            write_head(412)
            return [], 0
        if checked.status == 304:
            for name in ("Content-Type", "Content-Length", "Content-Encoding"):
                headers.delete(name)
            if headers.get("Etag"):
                headers.delete("Last-Modified")
            write_head(304)
            return [], 0
        content_type = headers.get("Content-Type") or ""
        try:
            ranges = parse_range(checked.range, size)
        except _RangeError as error:
            if str(error).endswith("failed to overlap"):
                headers.set("Content-Range", f"bytes */{size}")
            headers.set("Content-Type", "text/plain; charset=utf-8")
            headers.set("X-Content-Type-Options", "nosniff")
            write_head(416)
            response.write(f"{error}\n".encode())
            return [], 0
        if sum(length for _, length in ranges) > size:
            ranges = []  # more bytes asked than the file has: an attack or a confused client
        status = 200
        pieces: list[bytes | tuple[int, int]]
        if len(ranges) == 1:
            start, length = ranges[0]
            pieces = [(start, length)]
            send_size = length
            status = 206
            headers.set("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        elif len(ranges) > 1:
            boundary = secrets.token_hex(30)
            pieces = []
            send_size = 0
            for i, (start, length) in enumerate(ranges):
                part_head = (
                    ("\r\n" if i else "") + f"--{boundary}\r\n"
                    f"Content-Range: bytes {start}-{start + length - 1}/{size}\r\n"
                    f"Content-Type: {content_type}\r\n\r\n"
                ).encode("utf-8", "surrogateescape")
                pieces += [part_head, (start, length)]
                send_size += len(part_head) + length
            closing = f"\r\n--{boundary}--\r\n".encode("ascii")
            pieces.append(closing)
            send_size += len(closing)
            status = 206
            headers.set("Content-Type", "multipart/byteranges; boundary=" + boundary)
        else:
            pieces = [(0, size)]
            send_size = size
        headers.set("Accept-Ranges", "bytes")
        if not headers.get("Content-Encoding"):
            headers.set("Content-Length", str(send_size))
        write_head(status)
        return pieces, send_size

    # -- browse --------------------------------------------------------------------------------

    def _serve_browse(
        self, real_root: RootGuard, dir_path: str, hide: tuple[_Hide, ...],
        request: Request, response: Response, next: Any,
    ) -> Any:
        original = request.orig_path
        if request.path == "" or path_base(original) == path_base(request.path):
            if not original.endswith("/"):
                return redirect(request, response, original + "/")
        fd = self._open(dir_path, response, directory=True)
        try:
            if not within_root(real_root.real, dir_path, fd):
                return self._not_found(request, response, next)
        finally:
            os.close(fd)
        url_path = clean(request.path)
        try:
            items = self._read_directory(dir_path, real_root, hide)
        except OSError as error:
            if _is_permission(error):
                raise HandlerError(403, path_error("readdirent", dir_path, error), cause=error) from None
            if _is_not_exist(error):
                return self._not_found(request, response, next)
            raise HandlerError(500, path_error("readdirent", dir_path, error), cause=error) from None
        name = path_unescape(url_path)
        listing = _Listing(path_base(name if name is not None else ""), url_path, len(url_path) > 1, items)
        self._apply_query(request, response, listing)

        accept = ",".join(request.headers.get_all("Accept")).lower()
        if "application/json" in accept:
            body = encode_plain([item.as_json() for item in listing.items])
            response.headers.set("Content-Type", "application/json; charset=utf-8")
        else:
            body = render_listing_html(listing)
            response.headers.set("Content-Type", "text/html; charset=utf-8")
        response.write(body)
        return None

    def _read_directory(self, dir_path: str, real_root: RootGuard, hide: tuple[_Hide, ...]) -> list[_Item]:
        base = dir_path if dir_path.endswith("/") else dir_path + "/"
        with os.scandir(dir_path) as entries:
            read = sorted(islice(entries, _BROWSE_LIMIT), key=lambda entry: entry.name)
        items = []
        for entry in read:
            full = base + entry.name
            if file_hidden(full, hide):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            is_symlink = stat.S_ISLNK(info.st_mode)
            is_dir = stat.S_ISDIR(info.st_mode)
            size = info.st_size
            if is_symlink and within_root(real_root.real, full):
                try:
                    target = os.stat(full)
                    is_dir = stat.S_ISDIR(target.st_mode)
                    size = target.st_size
                except (OSError, ValueError):
                    pass  # a dangling link is listed with its own size
            name = entry.name + "/" if is_dir else entry.name
            url = "./" + quote(name, safe=_PATH_SAFE, errors="surrogateescape")
            items.append(_Item(name, size, url, info.st_mtime_ns, file_mode(info.st_mode), is_dir, is_symlink))
        return items

    def _apply_query(self, request: Request, response: Response, listing: _Listing) -> None:
        """Caddy's ``browseApplyQueryParams``: sort/order from the query (remembered in cookies)."""
        values, _ = parse_query(request.query)

        def first(name: str) -> str:
            found = values.get(name)
            return found[0] if found else ""

        sort_by, order = first("sort"), first("order")
        secure = "; Secure" if request.tls is not None else ""
        cookies = None
        if sort_by == "":
            sort_by = SORT_NAME_DIR_FIRST
            cookies = request_cookies(request.headers)
            for name, value in cookies:
                if name == "sort":
                    sort_by = value
                    break
        elif sort_by in _SORTS:
            response.headers.add("Set-Cookie", f"sort={sort_by}{secure}")
        if order == "":
            order = "asc"
            for name, value in cookies if cookies is not None else request_cookies(request.headers):
                if name == "order":
                    order = value
                    break
        elif order in ("asc", "desc"):
            response.headers.add("Set-Cookie", f"order={order}{secure}")
        listing.apply(sort_by, order, first("limit"), first("offset"))


# -- loading --------------------------------------------------------------------------------------

_KEYS = frozenset({
    "root", "hide", "index_names", "browse", "canonical_uris", "status_code", "pass_thru",
    "precompressed", "precompressed_order", "file_system",
})


def _weak_string(value: Any) -> Template | None:
    """A Caddy ``WeakString`` (any JSON scalar, kept as its text) as a template."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return Template("true" if value else "false")
    if isinstance(value, str):
        return Template(value)
    if isinstance(value, float):
        return Template(repr(value))
    if isinstance(value, int):
        return Template(str(value))
    return Template(json.dumps(value, separators=(",", ":")))


def _strings(config: dict[str, Any], key: str) -> list[str] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"file_server: {key} must be a list of strings")
    return value


@module("http.handlers.file_server", schema=Obj(
    {"root": STRING, "hide": STRINGS, "index_names": STRINGS, "browse": Obj({"template_file": STRING}),
     "canonical_uris": BOOL, "status_code": ANY, "pass_thru": BOOL,
     "precompressed": ModuleMap("http.precompressed"), "precompressed_order": STRINGS, "file_system": ANY},
))
def load_file_server(config: dict[str, Any], context: Any) -> FileServer:
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ConfigError(f'file_server: unknown field "{unknown[0]}"')
    if config.get("file_system"):
        raise ConfigError("file_server: file_system modules are not supported; files come from the local disk")
    root = config.get("root") or ""
    if not isinstance(root, str):
        raise ConfigError("file_server: root must be a string")
    browse = config.get("browse")
    if browse is not None and not isinstance(browse, dict):
        raise ConfigError("file_server: browse must be an object")
    if browse and browse.get("template_file"):
        context.log.warn(
            "file_server: browse template_file {template} is not supported (Go templates); using the built-in listing",
            template=browse.get("template_file"),
        )
    precompressed: dict[str, Precompressed] = {}
    raw_precompressed = config.get("precompressed") or {}
    if not isinstance(raw_precompressed, dict):
        raise ConfigError("file_server: precompressed must be an object of encoder names")
    for name, module_config in raw_precompressed.items():
        sidecar = lookup(f"http.precompressed.{name}")(module_config or {}, context)
        if sidecar.encoding in precompressed:
            raise ConfigError(f"file_server: precompressor already added: {sidecar.encoding}")
        precompressed[sidecar.encoding] = sidecar
    canonical = config.get("canonical_uris")
    return FileServer(
        root=root,
        hide=_strings(config, "hide"),
        index_names=_strings(config, "index_names"),
        browse=browse is not None,
        canonical_uris=canonical is None or bool(canonical),
        status=_weak_string(config.get("status_code")),
        pass_thru=bool(config.get("pass_thru")),
        precompressed=precompressed,
        precompressed_order=_strings(config, "precompressed_order"),
    )
