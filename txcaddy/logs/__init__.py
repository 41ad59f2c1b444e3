"""Caddy's logging at run time: the ``logging`` config, access logs and HTTP error logs.

Caddy writes structured entries through zap; txcaddy writes the same entries
through ``twisted.logger``. A ``LogSystem`` is built once per config from
``logging.logs``: each configured log becomes an observer (``CustomLog``) on
the system's own ``LogPublisher`` that keeps the events its level and
``include``/``exclude`` logger names accept, encodes them (``json``,
``console`` or ``filter``) and hands the line to its writer (``file``,
``stdout``, ``stderr``, ``discard``, ``net``). Writers are opened when the
service starts and closed when it stops.

Each HTTP server gets a ``ServerLogger`` built from its ``logs`` object. It
emits Caddy's ``handled request`` entry to logger ``http.log.access[.NAME]``
when the response is done, and the ``http.log.error[.NAME]`` entry for a
handler error. The server calls ``begin`` before its handler chain, so the
request is recorded as it arrived (before rewrites and ``request_header``),
as Caddy does; ``chain_done``/``chain_failed`` and ``finished`` follow.

Entries use Caddy's field names and zap's key order and number formats, so
tools that read Caddy's logs read these. ``docs/logging.md`` says what is
supported.

The implementation is split by concern into private modules: ``_system``
(levels, ``CustomLog``, ``LogSystem``), ``_writers``, ``_encoders``,
``_filters`` (the ``filter`` encoder's field filters), ``_access``
(``ServerLogger``) and ``_values`` (entry values); Go's time layouts and
number formats come from ``txcaddy._go``. Importing this package registers their ``caddy.logging.*`` modules.
"""

from __future__ import annotations

from txcaddy.logs._access import ServerLogger
from txcaddy.logs._encoders import ConsoleLogEncoder as ConsoleLogEncoder
from txcaddy.logs._encoders import FilterLogEncoder as FilterLogEncoder
from txcaddy.logs._encoders import JSONLogEncoder as JSONLogEncoder
from txcaddy.logs._encoders import json_string as json_string
from txcaddy.logs._filters import CookieFilter as CookieFilter
from txcaddy.logs._filters import HashFilter as HashFilter
from txcaddy.logs._filters import IPMaskFilter as IPMaskFilter
from txcaddy.logs._filters import QueryFilter as QueryFilter
from txcaddy.logs._filters import RegexpFilter as RegexpFilter
from txcaddy.logs._system import LEVELS, CustomLog, LogSystem, logger_allowed
from txcaddy.logs._values import Duration, Entry, StringArray
from txcaddy.logs._writers import FileWriter as FileWriter
from txcaddy.logs._writers import NetWriter as NetWriter
from txcaddy.logs._writers import StdWriter as StdWriter

__all__ = [
    "LEVELS",
    "CustomLog",
    "Duration",
    "Entry",
    "LogSystem",
    "ServerLogger",
    "StringArray",
    "logger_allowed",
]
