"""Levels, custom logs and the ``LogSystem`` built from Caddy's ``logging`` object."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from zope.interface import implementer

from txcaddy.config.loader import LoadContext
from txcaddy.config.schema import DURATION, INT, STRING, STRINGS, MapOf, Module, Obj, Spec
from txcaddy.errors import ConfigError
from txcaddy.logs._access import ServerLogger
from txcaddy.logs._encoders import default_encoder
from txcaddy.logs._values import Entry
from txcaddy.logs._writers import DiscardWriter, NetWriter, StdWriter, _expand, _seconds

_log = Logger(namespace="txcaddy.logs")  # the namespace the single module had

# -- levels -----------------------------------------------------------------------------

# zap's levels, lowest first; Caddy's ``level`` option names the lowest one a log keeps.
LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "dpanic": 4, "panic": 5, "fatal": 6}
_TWISTED_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "dpanic": LogLevel.critical,
    "panic": LogLevel.critical,
    "fatal": LogLevel.critical,
}
_FROM_TWISTED = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "fatal",
}
_CONFIG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")  # what ``level`` accepts


def logger_allowed(name: str, include: list[str], exclude: list[str]) -> bool:
    """Whether a log with these ``include``/``exclude`` lists takes logger ``name``.

    Names match by dotted prefix (``http.log`` takes ``http.log.access.x``);
    the longest matching namespace of either list wins.
    """
    if not include and not exclude:
        return True
    if name and name not in ("*", "."):
        name += "."
    longest_accept = longest_reject = 0
    for namespace in include:
        if name.startswith(namespace + ".") and len(namespace) > longest_accept:
            longest_accept = len(namespace)
    if include and longest_accept == 0:
        return False
    for namespace in exclude:
        if (namespace == "*" and name != ".") or (namespace == "." and name == "."):
            return False
        if name.startswith(namespace + ".") and len(namespace) > longest_reject:
            longest_reject = len(namespace)
    if exclude and longest_reject > longest_accept:
        return False
    return longest_accept > longest_reject or (not include and longest_reject == 0)


def check_include_exclude(include: list[str], exclude: list[str]) -> None:
    """Caddy's rule: with both lists, each include must nest with an exclude and none be equal."""
    if not include or not exclude:
        return
    for allow in include:
        for deny in exclude:
            if allow == deny:
                raise ConfigError(f"include and exclude must not intersect, but found {allow} in both lists")
    for allow in include:
        if not any((allow + ".").startswith(deny + ".") or (deny + ".").startswith(allow + ".") for deny in exclude):
            raise ConfigError(
                "when both include and exclude are populated, each element must be a superspace or "
                f"subspace of one in the other list; check '{allow}' in include"
            )


class _Sampler:
    """zap's sampler: per level and message, the first N entries of each interval, then every Mth."""

    def __init__(self, interval: float, first: int, thereafter: int) -> None:
        self.interval = interval
        self.first = first
        self.thereafter = thereafter
        self.counts: dict[tuple[str, str], list[float]] = {}

    def allow(self, level: str, message: str, when: float) -> bool:
        key = (level, message)
        counter = self.counts.get(key)
        if counter is None or when >= counter[1]:
            if len(self.counts) > 4096:
                self.counts.clear()
            counter = self.counts[key] = [0, when + self.interval]
        counter[0] += 1
        n = counter[0]
        return n <= self.first or (self.thereafter > 0 and (n - self.first) % self.thereafter == 0)


@implementer(ILogObserver)
class CustomLog:
    """One configured log: an observer keeping the events its level and names accept."""

    def __init__(
        self,
        name: str,
        writer: Any,
        encoder: Any,
        *,
        level: str = "info",
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        sampling: _Sampler | None = None,
    ) -> None:
        self.name = name
        self.writer = writer
        self.encoder = encoder
        self.level = level
        self.min_rank = LEVELS[level]
        self.include = list(include)
        self.exclude = list(exclude)
        self.sampling = sampling
        self._allowed: dict[str, bool] = {}

    def accepts(self, logger: str) -> bool:
        allowed = self._allowed.get(logger)
        if allowed is None:
            allowed = logger_allowed(logger, self.include, self.exclude)
            if len(self._allowed) > 4096:
                self._allowed.clear()
            self._allowed[logger] = allowed
        return allowed

    def wants(self, logger: str, level: str) -> bool:
        return LEVELS[level] >= self.min_rank and self.accepts(logger)

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("caddy_level") or _FROM_TWISTED.get(event.get("log_level"), "info")  # type: ignore[arg-type]
        logger = event.get("log_namespace") or ""
        if LEVELS[level] < self.min_rank or not self.accepts(logger):
            return
        message = event.get("caddy_msg", "")
        when = event.get("log_time")
        if when is None:
            when = time.time()
        if self.sampling is not None and not self.sampling.allow(level, message, when):
            return
        try:
            line = self.encoder.encode(Entry(level, when, logger, message, event.get("caddy_fields") or []))
            self.writer.write(line)
        except Exception:  # noqa: BLE001 - a broken log must not break the request
            _log.failure("writing to log {name} ({writer})", name=self.name, writer=str(self.writer))


class LogSystem:
    """The logs of one config: observers on a private ``LogPublisher``, writers shared by key."""

    def __init__(self, logs: Iterable[CustomLog] = (), *, clock: Callable[[], float] = time.time) -> None:
        self.logs = list(logs)
        self.clock = clock
        self.publisher = LogPublisher(*self.logs)
        self.running = False
        self._wanted: dict[tuple[str, str], bool] = {}
        # A worker process (``workers N``) hands its entries to the supervisor, whose own logs
        # write them: then this system opens no writer and only decides what is wanted.
        self.forward: Callable[[str, str, str, list[tuple[str, Any]], float], Any] | None = None

    @property
    def writers(self) -> list[Any]:
        seen: dict[str, Any] = {}
        for log in self.logs:
            seen.setdefault(log.writer.key, log.writer)
        return list(seen.values())

    def start(self) -> None:
        """Open the writers (a file that cannot be opened fails here, loudly)."""
        if self.forward is not None:
            self.running = True
            return
        opened = []
        try:
            for writer in self.writers:
                writer.open()
                opened.append(writer)
        except Exception:
            for writer in opened:
                writer.close()
            raise
        self.running = True

    def stop(self) -> None:
        self.running = False
        if self.forward is not None:
            return
        for writer in self.writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - close every writer
                _log.failure("closing log writer {writer}", writer=str(writer))

    def enabled(self, logger: str, level: str) -> bool:
        """Whether any log would keep an entry (so unwanted entries are never built)."""
        if not self.running:
            return False
        key = (logger, level)
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = any(log.wants(logger, level) for log in self.logs)
            if len(self._wanted) > 4096:
                self._wanted.clear()
            self._wanted[key] = wanted
        return wanted

    def emit(self, logger: str, level: str, message: str, fields: list[tuple[str, Any]], when: float | None = None) -> None:
        """Publish one entry as a ``twisted.logger`` event to the configured logs."""
        if not self.running:
            return
        if self.forward is not None:
            self.forward(logger, level, message, fields, self.clock() if when is None else when)
            return
        self.publisher(
            {
                "log_namespace": logger,
                "log_level": _TWISTED_LEVELS[level],
                "log_time": self.clock() if when is None else when,
                "log_format": "{caddy_msg}",
                "caddy_level": level,
                "caddy_msg": message,
                "caddy_fields": fields,
            }
        )

    def server_logger(self, logs_config: dict[str, Any] | None, *, error_routes: bool = False) -> ServerLogger:
        return ServerLogger(self, logs_config, error_routes=error_routes)

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any] | None,
        context: Any = None,
        *,
        clock: Callable[[], float] | None = None,
        stdout: Any = None,
        stderr: Any = None,
        terminal: bool | None = None,
    ) -> LogSystem:
        """Build the logs of Caddy's ``logging`` object (None: only the default log).

        ``stdout``/``stderr`` replace the process's streams (tests);
        ``terminal`` says whether stdout is a terminal, which picks the default
        encoder as in Caddy (console on a terminal, JSON otherwise).
        """
        if context is None:
            context = LoadContext()
        reactor = getattr(context, "reactor", None)
        if clock is None:
            clock = getattr(reactor, "seconds", None) or time.time
        if terminal is None:
            terminal = _stdout_is_terminal()
        streams = {"stdout": stdout, "stderr": stderr}
        logs_config = (config or {}).get("logs") or {}
        shared: dict[str, Any] = {}
        logs = []
        for name in ["default", *(n for n in logs_config if n != "default")]:
            log_config = logs_config.get(name)
            if log_config is None:  # Caddy's own default: stderr, INFO
                writer = shared.setdefault("std:err", StdWriter("stderr", stderr))
                logs.append(CustomLog("default", writer, default_encoder(True, terminal)))
                continue
            where = "setting up default log" if name == "default" else f"setting up custom log '{name}'"
            context.path.append(f"logging.logs.{name}")
            try:
                log = _load_log(name, log_config, context, terminal)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            finally:
                context.path.pop()
            if isinstance(log.writer, DiscardWriter):
                continue  # Caddy drops logs that only discard
            if isinstance(log.writer, StdWriter) and streams.get(log.writer.name) is not None:
                log.writer.stream = streams[log.writer.name]
            if isinstance(log.writer, NetWriter):
                log.writer.fallback = shared.setdefault("std:err", StdWriter("stderr", stderr))
            log.writer = shared.setdefault(log.writer.key, log.writer)
            logs.append(log)
        return cls(logs, clock=clock)


#: Caddy's ``logging`` object (``caddy.Logging``).
LOGGING: Spec = Obj(
    {
        "sink": Obj({"writer": Module("caddy.logging.writers", "output")}),
        "logs": MapOf(Obj(
            {
                "writer": Module("caddy.logging.writers", "output"),
                "encoder": Module("caddy.logging.encoders", "format"),
                "level": STRING,
                "sampling": Obj({"interval": DURATION, "first": INT, "thereafter": INT}),
                "include": STRINGS,
                "exclude": STRINGS,
            },
            strict=True, name="caddy.CustomLog",
        )),
    },
    strict=True, name="caddy.Logging",
)


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(1)
    except OSError:
        return False


def _load_log(name: str, config: dict[str, Any], context: Any, terminal: bool) -> CustomLog:
    level = _expand(str(config.get("level") or "")).lower() or "info"
    if level not in _CONFIG_LEVELS:
        raise ConfigError(f"unrecognized log level: {config.get('level')}")
    include = [str(n) for n in config.get("include") or ()]
    exclude = [str(n) for n in config.get("exclude") or ()]
    check_include_exclude(include, exclude)
    writer_config = config.get("writer")
    writer = context.load_module("caddy.logging.writers", writer_config, "output") if writer_config else StdWriter("stderr")
    encoder_config = config.get("encoder")
    if encoder_config:
        encoder = context.load_module("caddy.logging.encoders", encoder_config, "format")
    else:
        encoder = default_encoder(isinstance(writer, StdWriter), terminal)
    sampling = None
    sampling_config = config.get("sampling")
    if sampling_config:
        sampling = _Sampler(
            _seconds(sampling_config.get("interval")) or 1.0,
            int(sampling_config.get("first") or 100),
            int(sampling_config.get("thereafter") or 100),
        )
    return CustomLog(name, writer, encoder, level=level, include=include, exclude=exclude, sampling=sampling)
