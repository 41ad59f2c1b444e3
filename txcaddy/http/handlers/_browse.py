"""``browse`` directory listings: sizes, sorting, and the HTML/JSON rendering."""

from __future__ import annotations

import time
from typing import Any

from txcaddy._go.html import escape_string
from txcaddy._go.strconv import NumError, atoi
from txcaddy._go.time import time_json
from txcaddy._go.url import path_unescape


def _atoi_or_zero(text: str) -> int:
    """``strconv.Atoi`` with its error ignored, as Caddy reads ``offset`` and ``limit``."""
    try:
        return atoi(text)
    except NumError:
        return 0


_PATH_SAFE = "/$&+,;=:@-._~"

def human_size(size: int) -> str:
    """go-humanize's ``IBytes`` (powers of 1024)."""
    if size < 10:
        return f"{size} B"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    exponent = 0
    while exponent < len(units) - 1 and size >= 1024 ** (exponent + 1):
        exponent += 1
    value = int(size / 1024**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {units[exponent]}" if value < 10 else f"{value:.0f} {units[exponent]}"


class _Item:
    __slots__ = ("name", "size", "url", "mtime_ns", "mode", "is_dir", "is_symlink")

    def __init__(self, name: str, size: int, url: str, mtime_ns: int, mode: int, is_dir: bool, is_symlink: bool) -> None:
        self.name = name
        self.size = size
        self.url = url
        self.mtime_ns = mtime_ns
        self.mode = mode
        self.is_dir = is_dir
        self.is_symlink = is_symlink

    def as_json(self) -> dict[str, Any]:
        return {
            "name": _valid_text(self.name),
            "size": self.size,
            "url": self.url,
            "mod_time": time_json(self.mtime_ns),
            "mode": self.mode,
            "is_dir": self.is_dir,
            "is_symlink": self.is_symlink,
        }


def _valid_text(text: str) -> str:
    """What Go's JSON/HTML writers make of a name that is not valid UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


SORT_NAME, SORT_NAME_DIR_FIRST, SORT_SIZE, SORT_TIME = "name", "namedirfirst", "size", "time"
_SORTS = (SORT_NAME, SORT_NAME_DIR_FIRST, SORT_SIZE, SORT_TIME)


def sort_items(items: list[_Item], sort_by: str, order: str) -> list[_Item]:
    """Caddy's listing orders; an unknown ``sort`` keeps the listing as read."""
    if sort_by == SORT_NAME:
        key: Any = lambda item: item.name.lower()  # noqa: E731
    elif sort_by == SORT_NAME_DIR_FIRST:
        key = lambda item: (not item.is_dir, item.name.lower())  # noqa: E731
    elif sort_by == SORT_SIZE:
        # directories first (by name), then files by size
        key = lambda item: (0, item.name.lower()) if item.is_dir else (1, item.size)  # noqa: E731
    elif sort_by == SORT_TIME:
        key = lambda item: item.mtime_ns  # noqa: E731
    else:
        return items
    return sorted(items, key=key, reverse=order == "desc")


class _Listing:
    """Caddy's ``browseTemplateContext``."""

    def __init__(self, name: str, path: str, can_go_up: bool, items: list[_Item]) -> None:
        self.name = name
        self.path = path
        self.can_go_up = can_go_up
        self.items = items
        self.num_dirs = sum(1 for item in items if item.is_dir)
        self.num_files = len(items) - self.num_dirs
        self.offset = 0
        self.limit = 0
        self.sort = ""
        self.order = ""

    def apply(self, sort_by: str, order: str, limit_text: str, offset_text: str) -> None:
        self.sort, self.order = sort_by, order
        self.items = sort_items(self.items, sort_by, order)
        if offset_text:
            offset = _atoi_or_zero(offset_text)
            if 0 < offset <= len(self.items):
                self.items = self.items[offset:]
                self.offset = offset
        if limit_text:
            limit = _atoi_or_zero(limit_text)
            if 0 < limit <= len(self.items):
                self.items = self.items[:limit]
                self.limit = limit

    def breadcrumbs(self) -> list[tuple[str, str]]:
        if not self.path:
            return []
        path = self.path[:-1] if self.path.endswith("/") else self.path
        parts = path.split("/")
        crumbs = []
        for i, part in enumerate(parts):
            if i == 0 and part == "":
                part = "/"
            crumbs.append(("../" * (len(parts) - i - 1), path_unescape(part) or ""))
        return crumbs


def _e(text: str) -> str:
    return escape_string(_valid_text(text))


def render_listing_html(listing: _Listing) -> bytes:
    """A small, self-contained listing page (every name escaped)."""
    crumbs = "".join(
        f'<a href="{_e(link)}">{_e(text)}</a>{"/" if i else ""}' for i, (link, text) in enumerate(listing.breadcrumbs())
    )
    paging = ""
    if listing.limit:
        paging += f"&amp;limit={listing.limit}"
    if listing.offset:
        paging += f"&amp;offset={listing.offset}"

    def header(sort_by: str, label: str) -> str:
        order = "desc" if listing.sort == sort_by and listing.order != "desc" else "asc"
        arrow = ""
        if listing.sort == sort_by:
            arrow = " &#9650;" if listing.order != "desc" else " &#9660;"
        return f'<th><a href="?sort={sort_by}&amp;order={order}{paging}">{label}{arrow}</a></th>'

    rows = []
    if listing.can_go_up:
        rows.append('<tr><td><a href="..">&#8593; Up</a></td><td>&mdash;</td><td></td></tr>')
    for item in listing.items:
        kind = "dir" if item.is_dir else "file"
        if item.is_symlink:
            kind += " symlink"
        size = "&mdash;" if item.is_dir else f'<span title="{item.size}">{human_size(item.size)}</span>'
        modified = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.mtime_ns // 1_000_000_000))
        rows.append(
            f'<tr class="{kind}"><td><a href="{_e(item.url)}">{_e(item.name)}</a></td>'
            f'<td>{size}</td><td><time datetime="{time_json(item.mtime_ns - item.mtime_ns % 1_000_000_000)}">'
            f"{modified} UTC</time></td></tr>"
        )
    directories = "directory" if listing.num_dirs == 1 else "directories"
    files = "file" if listing.num_files == 1 else "files"
    shown = f" (of which only {listing.limit} are displayed)" if listing.limit else ""
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f"<title>{_e(listing.name)}</title>\n"
        "<style>body{font-family:sans-serif;margin:0}header,main{padding:1em 5%}header{background:#f2f2f2}"
        "h1{font-size:20px;font-weight:normal}table{width:100%;border-collapse:collapse}"
        "th,td{text-align:left;padding:.5em 0;white-space:nowrap}tr{border-bottom:1px dashed #dadada}"
        "a{color:#006ed3;text-decoration:none}tr.dir a{font-weight:bold}</style>\n</head>\n<body>\n"
        f"<header><h1>{crumbs}</h1></header>\n<main>\n"
        f"<p>{listing.num_dirs} {directories}, {listing.num_files} {files}{shown}</p>\n"
        "<table>\n<thead><tr>" + header(SORT_NAME, "Name") + header(SORT_SIZE, "Size") + header(SORT_TIME, "Modified")
        + "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n</main>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")
