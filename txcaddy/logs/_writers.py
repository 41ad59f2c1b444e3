"""Log writers: stdout/stderr, discard, rolling files and network (``caddy.logging.writers.*``).

A writer has ``key`` (logs with the same key share one writer), ``open()``,
``write(bytes)`` and ``close()``; ``str(writer)`` says where the lines go.
"""

from __future__ import annotations

import calendar
import gzip
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from txcaddy._go.net import parse_ip
from txcaddy._reactor import IServingReactor, default_reactor
from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.config.placeholders import replace_known
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, DURATION, INT, STRING, Obj
from txcaddy.config.values import parse_caddy_duration
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ILogWriter

_log = Logger(namespace="txcaddy.logs")  # the namespace the single module had

@implementer(ILogWriter)
class StdWriter:
    """``stdout`` / ``stderr``: the process's file descriptor, as Caddy (twistd may have
    replaced ``sys.stdout``/``sys.stderr`` with log redirectors)."""

    def __init__(self, name: str, stream: Any = None) -> None:
        self.name = name
        self.key = "std:out" if name == "stdout" else "std:err"
        self.stream = stream  # a binary file-like object; None means the file descriptor

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.write(data)
            return
        fd = 1 if self.name == "stdout" else 2
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return self.name


@implementer(ILogWriter)
class DiscardWriter:
    key = "discard"

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return "discard"


_BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"
MEGABYTE = 1024 * 1024


@implementer(ILogWriter)
class FileWriter:
    """``file``: appends lines to a file, rolling it by size as Caddy 2.6.2's (lumberjack v2.0.0) does.

    With rolling (the default) the file is opened at the first write, as
    lumberjack does: created with mode 0644 (directories 0744) if missing, or
    rolled first if that write would take it to ``roll_size_mb``. A write that
    would take the file past the size renames it to ``name-<UTC time>.ext``
    (``2006-01-02T15-04-05.000``, local time with ``roll_local_time``) and
    starts a new one with the old one's mode; a line longer than the size is
    dropped with an error, as lumberjack refuses it. After each roll, backups
    beyond ``roll_keep`` or older than ``roll_keep_days`` are removed and the
    others gzipped (``roll_gzip``), off the reactor thread when ``in_thread``
    is given (lumberjack's mill goroutine). Without rolling the file is opened
    at once and only appended to (Caddy's ``os.OpenFile``, mode 0666).
    """

    def __init__(
        self,
        filename: str,
        *,
        roll: bool = True,
        roll_size_mb: int = 100,
        roll_gzip: bool = True,
        roll_local_time: bool = False,
        roll_keep: int = 10,
        roll_keep_days: int = 90,
        clock: Callable[[], float] = time.time,
        in_thread: Callable[..., Any] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.filename = filename
        self.key = "file:" + filename
        self.roll = roll
        self.max_bytes = max_bytes if max_bytes is not None else (roll_size_mb or 100) * MEGABYTE
        self.gzip = roll_gzip
        self.local_time = roll_local_time
        self.keep = roll_keep
        self.keep_days = roll_keep_days
        self.clock = clock
        self.in_thread = in_thread
        self.file: Any = None
        self.size = 0
        self._mill_lock = threading.Lock()

    def __str__(self) -> str:
        return os.path.abspath(self.filename)

    def open(self) -> None:
        """Without rolling, open the file now (a missing directory fails the config, as Caddy's
        ``os.OpenFile``); a rolling file waits for its first line, as lumberjack does."""
        if self.file is not None or self.roll:
            return
        fd = os.open(self.filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self.file = os.fdopen(fd, "ab", buffering=0)

    def write(self, data: bytes) -> None:
        if not self.roll:
            if self.file is None:
                self.open()
            self.file.write(data)
            return
        if len(data) > self.max_bytes:
            _log.error("write error: write length {length} exceeds maximum file size {limit} ({path})",
                       length=len(data), limit=self.max_bytes, path=self.filename)
            return
        if self.file is None:
            self._open_existing_or_new(len(data))
        if self.size + len(data) > self.max_bytes:
            self._rotate()
        self.file.write(data)
        self.size += len(data)

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            file.close()

    # -- rolling ---------------------------------------------------------------------------

    def _open_existing_or_new(self, length: int) -> None:
        self._mill()
        try:
            size = os.stat(self.filename).st_size
        except FileNotFoundError:
            self._open_new()
            return
        if size + length >= self.max_bytes:
            self._rotate()
            return
        try:
            self.file = open(self.filename, "ab", buffering=0)  # noqa: SIM115 - kept open until close()
        except OSError:
            self._open_new()  # lumberjack starts a new file when the old one will not open
            return
        self.size = size

    def _open_new(self) -> None:
        directory = os.path.dirname(self.filename) or "."
        os.makedirs(directory, 0o744, exist_ok=True)
        mode = 0o644
        try:
            mode = os.stat(self.filename).st_mode & 0o777
        except FileNotFoundError:
            pass
        else:
            os.rename(self.filename, self._backup_name())
        fd = os.open(self.filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self.file = os.fdopen(fd, "ab", buffering=0)
        self.size = 0

    def _rotate(self) -> None:
        self.close()
        self._open_new()
        self._mill()

    def _backup_name(self) -> str:
        now = self.clock()
        stamp = time.strftime(_BACKUP_TIME, time.localtime(now) if self.local_time else time.gmtime(now))
        stamp += f".{int(now * 1000) % 1000:03d}"
        directory, base = os.path.split(self.filename)
        stem, ext = os.path.splitext(base)
        return os.path.join(directory, f"{stem}-{stamp}{ext}")

    def backups(self) -> list[tuple[float, str]]:
        """(time, path) of this file's backups, newest first."""
        directory, base = os.path.split(self.filename)
        directory = directory or "."
        stem, ext = os.path.splitext(base)
        prefix = stem + "-"
        found = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        for name in names:
            if not name.startswith(prefix):
                continue
            middle = name[len(prefix) :]
            for suffix in (ext + ".gz", ext):
                if middle.endswith(suffix) and len(middle) > len(suffix):
                    stamp = middle[: len(middle) - len(suffix)]
                    when = _parse_backup_time(stamp)
                    if when is not None:
                        found.append((when, os.path.join(directory, name)))
                    break
        found.sort(reverse=True)
        return found

    def _mill(self) -> None:
        if not (self.keep or self.keep_days or self.gzip):
            return
        if self.in_thread is not None:
            self.in_thread(self._mill_now)
        else:
            self._mill_now()

    def _mill_now(self) -> None:
        with self._mill_lock:
            files = self.backups()
            remove: list[tuple[float, str]] = []
            if self.keep and self.keep < len(files):
                kept: set[str] = set()
                remaining: list[tuple[float, str]] = []
                for entry in files:
                    kept.add(entry[1].removesuffix(".gz"))
                    (remove if len(kept) > self.keep else remaining).append(entry)
                files = remaining
            if self.keep_days:
                cutoff = self.clock() - self.keep_days * 86400
                remove += [entry for entry in files if entry[0] < cutoff]
                files = [entry for entry in files if entry[0] >= cutoff]
            for _, path in remove:
                _remove_quietly(path)
            if self.gzip:
                for _, path in files:
                    if not path.endswith(".gz"):
                        _gzip_file(path)


def _parse_backup_time(stamp: str) -> float | None:
    whole, dot, millis = stamp.rpartition(".")
    if not dot or len(millis) != 3 or not millis.isdigit():
        return None
    try:
        parsed = time.strptime(whole, _BACKUP_TIME)
    except ValueError:
        return None
    return calendar.timegm(parsed) + int(millis) / 1000


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _gzip_file(path: str) -> None:
    """``path`` to ``path.gz`` with the same mode, then removed; a failed attempt leaves no
    partial ``.gz`` (lumberjack's compressLogFile)."""
    target = path + ".gz"
    try:
        mode = os.stat(path).st_mode & 0o777
        with open(path, "rb") as source:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                # no name and mtime 0 in the gzip header, as Go's gzip.Writer writes it
                with os.fdopen(fd, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as sink:
                    shutil.copyfileobj(source, sink)
            except BaseException:
                _remove_quietly(target)
                raise
        os.remove(path)
    except OSError as e:
        _log.error("compressing log file {path}: {error}", path=path, error=e)


class _NetProtocol(Protocol):
    def __init__(self, writer: NetWriter) -> None:
        self.writer = writer

    def connectionLost(self, reason: Any = None) -> None:
        self.writer._lost(self)


@implementer(ILogWriter)
class NetWriter:
    """``net``: lines to a TCP or Unix socket, or UDP datagrams.

    Lines written while the connection is being made are kept (up to 1 MiB);
    when it is down, lines go to stderr and it is redialled at most every 10
    seconds, as Caddy does.
    """

    REDIAL_INTERVAL = 10.0
    BUFFER_LIMIT = MEGABYTE

    def __init__(self, address: str, dial_timeout: float = 0.0, reactor: IServingReactor | None = None,
                 fallback: Any = None) -> None:
        try:
            parsed = NetworkAddress.parse(address)
        except AddressError as e:
            raise ConfigError(f"parsing network address '{address}': {e}") from None
        if parsed.network not in ("unix", "unixgram", "unixpacket") and parsed.start_port != parsed.end_port:
            raise ConfigError("multiple ports not supported")
        if dial_timeout < 0:
            raise ConfigError("timeout cannot be less than 0")
        self.network = parsed.network
        self.host = parsed.host
        self.port = parsed.start_port
        self.key = str(parsed)
        if self.network.startswith("udp") and parse_ip(self.host) is None:
            raise ConfigError(f"log address '{address}': a udp log address needs an IP address")
        if self.network not in ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix"):
            raise ConfigError(f"log address '{address}': network '{self.network}' is not supported")
        self.dial_timeout = dial_timeout
        self.reactor = reactor
        self.fallback = fallback or StdWriter("stderr")
        self.transport: Any = None
        self._connecting = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._last_dial = -math.inf
        self._closed = False
        self._udp_port: Any = None

    def __str__(self) -> str:
        return self.key

    def open(self) -> None:
        self._closed = False
        self._dial()

    def _dial(self) -> None:
        reactor = self.reactor = default_reactor(self.reactor)
        self._last_dial = reactor.seconds()
        if self.network.startswith("udp"):
            # Twisted's defaults for interface and maxPacketSize, spelled out: IReactorUDP
            # declares them without defaults.
            self._udp_port = reactor.listenUDP(0, DatagramProtocol(), "", 8192)
            self._udp_port.connect(self.host, self.port)
            self.transport = self._udp_port
            return
        timeout = self.dial_timeout or 30
        if self.network == "unix":
            endpoint: Any = UNIXClientEndpoint(reactor, self.host, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)
        self._connecting = True
        d: Deferred[Any] = endpoint.connect(Factory.forProtocol(lambda: _NetProtocol(self)))
        d.addCallbacks(self._connected, self._dial_failed)

    def _connected(self, protocol: _NetProtocol) -> None:
        self._connecting = False
        # The endpoint fires with the protocol after connecting it to its transport.
        transport = protocol.transport
        assert transport is not None
        if self._closed:
            transport.loseConnection()
            return
        self.transport = transport
        pending, self._pending, self._pending_size = self._pending, [], 0
        if pending:
            self.transport.writeSequence(pending)

    def _dial_failed(self, failure: Any) -> None:
        self._connecting = False
        _log.error("dialing log address {address}: {error}", address=self.key, error=failure.value)
        pending, self._pending, self._pending_size = self._pending, [], 0
        for line in pending:
            self.fallback.write(line)

    def _lost(self, protocol: _NetProtocol) -> None:
        if self.transport is protocol.transport:
            self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            return
        if not self._connecting and not self._closed and self.reactor is not None:
            if self.reactor.seconds() - self._last_dial >= self.REDIAL_INTERVAL:
                self._dial()
                if self.transport is not None:
                    self.transport.write(data)
                    return
        if self._connecting and self._pending_size + len(data) <= self.BUFFER_LIMIT:
            self._pending.append(data)
            self._pending_size += len(data)
            return
        self.fallback.write(data)

    def close(self) -> None:
        self._closed = True
        transport, self.transport = self.transport, None
        if self._udp_port is not None:
            self._udp_port.stopListening()
            self._udp_port = None
        elif transport is not None:
            transport.loseConnection()


def _seconds(value: Any) -> float:
    """A Caddy duration (nanoseconds or a string like ``3s``) in seconds."""
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return value / 1e9
    try:
        return parse_caddy_duration(str(value)) / 1e9
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _expand(text: str) -> str:
    """Global placeholders (``{env.LOG_DIR}``) in a filename, level or address."""
    if "{" not in text:
        return text
    return replace_known(text, None)


@module("caddy.logging.writers.stdout")
def _stdout_writer(config: dict[str, Any], context: Any) -> StdWriter:
    return StdWriter("stdout")


@module("caddy.logging.writers.stderr")
def _stderr_writer(config: dict[str, Any], context: Any) -> StdWriter:
    return StdWriter("stderr")


@module("caddy.logging.writers.discard")
def _discard_writer(config: dict[str, Any], context: Any) -> DiscardWriter:
    return DiscardWriter()


@module("caddy.logging.writers.file", schema=Obj(
    {"filename": STRING, "roll": BOOL, "roll_size_mb": INT, "roll_gzip": BOOL, "roll_local_time": BOOL,
     "roll_keep": INT, "roll_keep_days": INT},
))
def _file_writer(config: dict[str, Any], context: Any) -> FileWriter:
    filename = _expand(str(config.get("filename") or ""))
    if not filename:
        raise ConfigError("a file log needs a filename")
    reactor = getattr(context, "reactor", None)
    seconds = getattr(reactor, "seconds", None)
    in_thread = getattr(reactor, "callInThread", None)
    roll = config.get("roll")
    gzip_rolled = config.get("roll_gzip")
    return FileWriter(
        filename,
        roll=roll is not False,
        roll_size_mb=int(config.get("roll_size_mb") or 100),
        roll_gzip=gzip_rolled is not False,
        roll_local_time=bool(config.get("roll_local_time")),
        roll_keep=int(config.get("roll_keep") or 10),
        roll_keep_days=int(config.get("roll_keep_days") or 90),
        clock=seconds or time.time,
        in_thread=in_thread,
    )


@module("caddy.logging.writers.net", schema=Obj({"address": STRING, "dial_timeout": DURATION, "soft_start": BOOL}))
def _net_writer(config: dict[str, Any], context: Any) -> NetWriter:
    return NetWriter(
        _expand(str(config.get("address") or "")),
        _seconds(config.get("dial_timeout")),
        reactor=getattr(context, "reactor", None),
    )
