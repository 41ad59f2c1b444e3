"""Health checks of reverse_proxy upstreams (Caddy's ``healthchecks.go``).

Two independent mechanisms decide whether an upstream may be selected:

* **Passive** (``PassiveHealth``): the proxy loop reports failed round trips,
  unwanted statuses and slow responses; each failure is remembered on the
  shared ``Host`` for ``fail_duration``, and an upstream with ``max_fails``
  remembered failures is unavailable.
* **Active** (``ActiveHealthChecker``): a Twisted service per
  ``reverse_proxy`` handler probes every static upstream on a clock —
  immediately when started, then every ``interval`` — with a ``GET`` through
  the handler's own transport (same TLS, unix sockets and pool), and sets
  ``Host.unhealthy``. The flag lives on the shared ``Host`` (the service's ``HostRegistry``), so
  it survives a config reload; when the last checker of a host stops, the
  host counts as healthy again.

Everything runs on the reactor thread and takes the clock as a parameter, so
tests drive it with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy._go.net import join_host_port
from txcaddy._go.regexp import RegexpError, compile_regexp
from txcaddy._go.url import BAD_ESCAPE, path_escape
from txcaddy.config._resolvers import _global_resolver
from txcaddy.config.placeholders import Template, to_string
from txcaddy.config.values import duration_seconds, integer
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import status_code_matches
from txcaddy.reverseproxy.hosts import Host, Upstream
from txcaddy.reverseproxy.transport import ResponseHead, UpstreamAddress

__all__ = [
    "ActiveHealthChecker",
    "ActiveHealthConfig",
    "PassiveHealth",
    "ProbeTimeout",
    "load_active_health",
]

log = Logger(namespace="txcaddy.reverseproxy.health")

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
#: What Go's HTTP client sends when the request has no User-Agent (Caddy 2.6.2's probes).
GO_USER_AGENT = b"Go-http-client/1.1"

_WHERE = "reverse_proxy: health_checks.active"
_ACTIVE_FIELDS = frozenset({
    "path", "uri", "port", "headers", "interval", "timeout", "passes", "fails",
    "max_size", "expect_status", "expect_body",
})
#: Fields of newer Caddy versions that txcaddy does not implement, with the version.
_NEWER_FIELDS = {
    "method": "2.9", "body": "2.9", "upstream": "2.9", "follow_redirects": "2.8",
}
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


# -- passive ---------------------------------------------------------------------------------


class PassiveHealth:
    """Caddy's passive health checks: failures remembered for ``fail_duration``."""

    def __init__(self, config: dict[str, Any], clock: Any, log: Logger | None = None) -> None:
        self.fail_duration = _seconds(config.get("fail_duration"), "fail_duration")
        self.max_fails = _int(config.get("max_fails"), "max_fails")
        if log is not None and self.max_fails == 0 and not self.fail_duration:
            log.warn(
                "reverse_proxy: passive health checks without fail_duration and max_fails: Caddy 2.6.2 "
                "counts every upstream as down here (fixed in Caddy 2.7.5); txcaddy keeps them up")
        self.unhealthy_request_count = _int(config.get("unhealthy_request_count"), "unhealthy_request_count")
        statuses = config.get("unhealthy_status") or []
        if not isinstance(statuses, list) or not all(isinstance(s, int) for s in statuses):
            raise ConfigError("health_checks.passive.unhealthy_status must be a list of status codes")
        self.unhealthy_status: list[int] = statuses
        self.unhealthy_latency = _seconds(config.get("unhealthy_latency"), "unhealthy_latency")
        # Caddy 2.7.5's rule (DESIGN.md §1): a passive block means max_fails of at least 1,
        # never the 2.6.2 "fails < 0" that took every upstream down.
        if self.max_fails <= 0:
            self.max_fails = 1
        self.clock = clock
        self._timers: list[Any] = []

    def count_failure(self, upstream: Upstream) -> None:
        if not self.fail_duration:
            return
        host = upstream.host
        host.count_fail(1)
        entry: list[Any] = [host]

        def forget() -> None:
            host.count_fail(-1)
            self._timers.remove(entry)

        entry.append(self.clock.callLater(self.fail_duration, forget))
        self._timers.append(entry)

    def unload(self) -> None:
        """Forget the failures this handler counted (as Caddy does when its context ends)."""
        entries, self._timers = self._timers, []
        for host, timer in entries:
            if timer.active():
                timer.cancel()
                host.count_fail(-1)


def _seconds(value: Any, name: str) -> float:
    return duration_seconds(value, f"reverse_proxy: {name}") or 0.0


def _int(value: Any, name: str) -> int:
    return integer(value, f"reverse_proxy: {name}")


# -- active: configuration -------------------------------------------------------------------


class ActiveHealthConfig:
    """The ``health_checks.active`` JSON object, read and checked once."""

    def __init__(
        self,
        *,
        target: bytes = b"/",
        port: int = 0,
        headers: Sequence[tuple[bytes, bytes]] = (),
        host: bytes | None = None,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        passes: int = 1,
        fails: int = 1,
        max_size: int = 0,
        expect_status: int = 0,
        expect_body: re.Pattern[str] | None = None,
        deprecated_path: bool = False,
    ) -> None:
        self.target = target
        self.port = port
        self.headers = list(headers)
        self.host = host
        self.interval = interval
        self.timeout = timeout
        self.passes = max(passes, 1)
        self.fails = max(fails, 1)
        self.max_size = max_size
        self.expect_status = expect_status
        self.expect_body = expect_body
        self.deprecated_path = deprecated_path

    @classmethod
    def from_config(cls, config: Any) -> ActiveHealthConfig | None:
        """Read the JSON; None when active checks are off (no ``uri``, ``path`` nor ``port``)."""
        if not isinstance(config, dict):
            raise ConfigError(f"{_WHERE} must be a JSON object")
        for field in config:
            if field in _ACTIVE_FIELDS:
                continue
            if field in _NEWER_FIELDS:
                raise ConfigError(
                    f"{_WHERE}: {field!r} (Caddy {_NEWER_FIELDS[field]}) is not supported by txcaddy")
            raise ConfigError(f"{_WHERE}: unknown field {field!r}")
        uri = _string(config, "uri")
        path = _string(config, "path")
        port = integer(config.get("port"), f"{_WHERE}.port")
        if not (uri or path or port):
            return None
        if not 0 <= port <= 65535:
            raise ConfigError(f"{_WHERE}.port: {port} is not a port number")
        target = _target_of(uri) if uri else _escape_path(path)

        headers: list[tuple[bytes, bytes]] = []
        host: bytes | None = None
        raw_headers = config.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise ConfigError(f"{_WHERE}.headers must be an object of header lists")
        for name, values in raw_headers.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"{_WHERE}.headers.{name} must be a list of strings")
            if not _TOKEN.match(name):
                raise ConfigError(f"{_WHERE}.headers: invalid header name {name!r}")
            for value in values:
                if _BAD_HEADER_VALUE.search(value):
                    raise ConfigError(f"{_WHERE}.headers.{name}: invalid header value {value!r}")
            if name.lower() == "host":
                if values and values[0]:
                    host = values[0].encode("utf-8")
                continue
            headers.extend((name.encode("latin-1"), value.encode("utf-8")) for value in values)

        interval = duration_seconds(config.get("interval"), f"{_WHERE}.interval") or 0.0
        timeout = duration_seconds(config.get("timeout"), f"{_WHERE}.timeout") or 0.0
        if interval < 0 or timeout < 0:
            raise ConfigError(f"{_WHERE}: interval and timeout must not be negative")
        max_size = integer(config.get("max_size"), f"{_WHERE}.max_size")
        if max_size < 0:
            raise ConfigError(f"{_WHERE}.max_size must not be negative")
        expect_status = integer(config.get("expect_status"), f"{_WHERE}.expect_status")
        expect_body = None
        body_pattern = _string(config, "expect_body")
        if body_pattern:
            try:
                expect_body = compile_regexp(body_pattern)
            except RegexpError as e:
                raise ConfigError(f"{_WHERE}: expect_body: compiling regular expression: {e}") from None
        return cls(
            target=target,
            port=port,
            headers=headers,
            host=host,
            interval=interval or DEFAULT_INTERVAL,
            timeout=timeout or DEFAULT_TIMEOUT,
            passes=integer(config.get("passes"), f"{_WHERE}.passes"),
            fails=integer(config.get("fails"), f"{_WHERE}.fails"),
            max_size=max_size,
            expect_status=expect_status,
            expect_body=expect_body,
            deprecated_path=bool(path) and not uri,
        )

    def status_ok(self, status: int) -> bool:
        """``expect_status`` (exact or a class like 2 for 2xx), else Caddy 2.6.2's 200–399."""
        if self.expect_status > 0:
            return status_code_matches(status, self.expect_status)
        return 200 <= status < 400


def _string(config: dict[str, Any], field: str) -> str:
    value = config.get(field) or ""
    if not isinstance(value, str):
        raise ConfigError(f"{_WHERE}.{field} must be a string")
    return value


def _target_of(uri: str) -> bytes:
    """The request target for ``uri``: its path (re-escaped, as Go rebuilds the URL) and query."""
    if BAD_ESCAPE.search(uri.partition("#")[0]):
        raise ConfigError(f"{_WHERE}.uri: invalid URL escape in {uri!r}")
    rest = uri.partition("#")[0]
    path, sep, query = rest.partition("?")
    target = _escape_path(unquote(path, errors="surrogateescape"))
    if query:
        target += b"?" + query.encode("utf-8")
    return target


def _escape_path(path: str) -> bytes:
    if not path.startswith("/"):
        path = "/" + path  # Go's URL.String() adds the slash when there is a host
    return path_escape(path).encode("ascii")


# -- active: the checker ---------------------------------------------------------------------


class ProbeTimeout(Exception):
    """The health check took longer than ``timeout`` (Go's ``Client.Timeout``)."""


class _BodyLimit(Exception):
    """``max_size`` bytes were read: the rest of the body is not wanted."""


class _ActiveChecks:
    """Per-host bookkeeping shared by every running checker of that host (kept on the ``Host``,
    so it belongs to the service whose registry holds the host)."""

    __slots__ = ("checkers", "passes", "fails")

    def __init__(self) -> None:
        self.checkers = 0
        self.passes = 0
        self.fails = 0


class ActiveHealthChecker(Service):
    """Probes a handler's static upstreams on a clock and sets ``Host.unhealthy``.

    Rounds start when the service starts and then every ``interval``, whether
    or not the previous round finished (Go's ticker); a probe of a host that
    is still running is not started twice. ``next_round()`` gives a Deferred
    that fires when the next round has a verdict for every host — tests use
    it instead of sleeping.
    """

    def __init__(
        self,
        config: ActiveHealthConfig,
        upstreams: Sequence[Upstream],
        transport: Any,
        clock: Any,
        logger: Logger | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.clock = clock
        self.log = logger or log
        # One probe per address: the verdict lands on the shared Host anyway.
        seen: dict[Host, Upstream] = {}
        for upstream in upstreams:
            seen.setdefault(upstream.host, upstream)
        self.upstreams = list(seen.values())
        self._probes: dict[Host, _Probe] = {}
        self._round_waiters: list[Deferred[None]] = []
        self._loop: LoopingCall | None = None

    # -- service ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for upstream in self.upstreams:
            host = upstream.host
            state = host.active_checks
            if state is None:
                state = host.active_checks = _ActiveChecks()
            state.checkers += 1
        loop = self._loop = LoopingCall(self.check_all)
        loop.clock = self.clock
        loop.start(self.config.interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        probes, self._probes = self._probes, {}
        for probe in probes.values():
            probe.cancel()
        waiters, self._round_waiters = self._round_waiters, []
        for waiter in waiters:
            waiter.cancel()
        for upstream in self.upstreams:
            host = upstream.host
            state = host.active_checks
            if state is None:
                continue
            state.checkers -= 1
            if state.checkers <= 0:
                # Nobody checks this host any more: it must not stay down for good.
                host.active_checks = None
                if host.unhealthy:
                    host.mark(False)

    # -- rounds ----------------------------------------------------------------------------

    def next_round(self) -> Deferred[None]:
        """A Deferred firing when the next round's probes have all decided."""
        waiter: Deferred[None] = Deferred()
        self._round_waiters.append(waiter)
        return waiter

    def check_all(self) -> None:
        """One round: probe every upstream that has no probe running."""
        waiters, self._round_waiters = self._round_waiters, []
        verdicts: list[Deferred[Any]] = []
        for upstream in self.upstreams:
            if upstream.host in self._probes:
                verdicts.append(self._probes[upstream.host].verdict)
                continue
            try:
                probe = self._start_probe(upstream)
            except Exception:  # noqa: BLE001 - one upstream's trouble must not stop the checker
                self.log.failure("active health check of {address} failed", address=upstream.dial)
                continue
            if probe is not None:
                verdicts.append(probe.verdict)
        if not waiters:
            return

        def done(_: Any) -> None:
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)

        DeferredList(verdicts, consumeErrors=True).addCallback(done)

    def _start_probe(self, upstream: Upstream) -> _Probe | None:
        where = self._where(upstream)
        if where is None:
            return None
        address, host_addr = where
        config = self.config
        headers = [(b"Host", config.host if config.host is not None else host_addr.encode("utf-8"))]
        if not any(name.lower() == b"user-agent" for name, _ in config.headers):
            headers.append((b"User-Agent", GO_USER_AGENT))
        headers.extend(config.headers)
        probe = _Probe(self, upstream.host, host_addr)
        self._probes[upstream.host] = probe
        probe.start(address, headers)
        return probe

    def _where(self, upstream: Upstream) -> tuple[UpstreamAddress, str] | None:
        """Where to send the probe and its Host (Caddy's address handling); None skips it."""
        dial = upstream.dial
        if "{" in dial:
            rendered = _render_global(dial)
            if rendered is None:
                self.log.error(
                    "invalid use of placeholders in dial address for active health checks: {address}",
                    address=dial)
                return None
            dial = rendered
        network, sep, rest = dial.partition("/")
        if not sep:
            network, rest = "tcp", dial
        try:
            if network.lower() == "unix":
                address = UpstreamAddress.parse(f"unix/{rest}")
            else:
                address = UpstreamAddress.parse(rest)
        except ValueError as error:
            if "-" in rest.rpartition(":")[2]:
                self.log.error("multiple addresses (upstream must map to only one address): {address}",
                               address=dial)
            else:
                self.log.error("bad network address {address}: {error}", address=dial, error=str(error))
            return None
        port = self.config.port
        if address.network == "unix":
            if port:
                self.log.error(
                    "health_port cannot be used with the unix socket upstream {address}", address=dial)
                return None
            return address, "localhost"  # a socket path cannot be a URL host
        if port:
            address = UpstreamAddress("tcp", host=address.host, port=port)
        return address, join_host_port(address.host, str(address.port))

    # -- verdicts --------------------------------------------------------------------------

    def _record(self, host: Host, host_addr: str, healthy: bool) -> None:
        """Count a verdict; flip the host's flag after ``passes``/``fails`` in a row."""
        state = host.active_checks
        if state is None:  # stopped meanwhile
            return
        if healthy:
            state.fails = 0
            state.passes += 1
            if host.unhealthy and state.passes >= self.config.passes:
                host.mark(False)
                state.passes = 0
                self.log.info("host is up: {host}", host=host_addr)
        else:
            state.passes = 0
            state.fails += 1
            if not host.unhealthy and state.fails >= self.config.fails:
                host.mark(True)
                state.fails = 0
                self.log.warn("host is down: {host}", host=host_addr)

    def _probe_done(self, probe: _Probe) -> None:
        if self._probes.get(probe.host) is probe:
            del self._probes[probe.host]


def _render_global(dial: str) -> str | None:
    """``dial`` with global placeholders (``{env.*}``, ``{system.*}``) filled in; None when a
    placeholder is request-scoped, unknown or empty (Caddy's ``ReplaceOrErr(…, true, true)``)."""
    template = Template(dial)
    for key in template.keys:
        resolver = _global_resolver(key)
        if resolver is None or to_string(resolver(None, None)) == "":
            return None
    return template.render(None, None)


def _error_text(failure: Failure) -> str:
    """Go's ``err.Error()`` for a failed probe: the message, else the exception's name."""
    # Failure.__init__ always sets ``type`` (or raises); Twisted declares it Optional.
    return failure.getErrorMessage() or cast("type[BaseException]", failure.type).__name__


class _Probe:
    """One health-check request: its timeout, its verdict and the body handling.

    As Go's client with ``Timeout`` the deadline covers the whole exchange.
    The verdict is decided at the response head unless ``expect_body`` needs
    the body; the rest of the body is then read and dropped (up to
    ``max_size``) so the connection can be reused.
    """

    def __init__(self, checker: ActiveHealthChecker, host: Host, host_addr: str) -> None:
        self.checker = checker
        self.host = host
        self.host_addr = host_addr
        self.verdict: Deferred[bool | None] = Deferred()
        self.exchange: Any = None
        self.timer: Any = None
        self.decided = False
        self.finished = False
        self.collecting = False  # reading the body for expect_body
        self.body: list[bytes] = []
        self.size = 0

    def start(self, address: UpstreamAddress, headers: list[tuple[bytes, bytes]]) -> None:
        checker = self.checker
        self.timer = checker.clock.callLater(checker.config.timeout, self._time_out)
        try:
            exchange = checker.transport.request(address, b"GET", checker.config.target, headers, None, None)
        except Exception as error:  # noqa: BLE001 - a transport refusing the request
            self._decide(False, "HTTP request failed: {error}", error=str(error))
            self._finish()
            return
        self.exchange = exchange
        exchange.head.addCallbacks(self._got_head, self._head_failed)

    def cancel(self) -> None:
        """The checker stopped: give up without a verdict."""
        self.decided = True
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.abort(CancelledError("health checker stopped"))
        self._finish()

    # -- response ----------------------------------------------------------------------------

    def _head_failed(self, failure: Failure) -> None:
        self._decide(False, "HTTP request failed: {error}", error=_error_text(failure))
        self._finish()

    def _got_head(self, head: ResponseHead) -> None:
        config = self.checker.config
        if not config.status_ok(head.status):
            reason = "unexpected status code" if config.expect_status > 0 else "status code out of tolerances"
            self._decide(False, reason + " {status_code}", status_code=head.status)
        elif config.expect_body is not None:
            self.collecting = True
        else:
            self._decide(True, "")
        self.exchange.deliver_body(self)

    def body_data(self, data: bytes) -> None:
        limit = self.checker.config.max_size
        if limit and self.size + len(data) >= limit:
            data = data[: limit - self.size]
            self.size = limit
            if self.collecting:
                self.body.append(data)
            # Like Go's LimitReader: what is past max_size is never read.
            self.exchange.abort(_BodyLimit())
            return
        self.size += len(data)
        if self.collecting:
            self.body.append(data)

    def body_trailers(self, trailers: Any) -> None:
        pass

    def body_finished(self, reason: Failure | None) -> None:
        if self.collecting and not self.decided:
            if reason is not None and not reason.check(_BodyLimit):
                self._decide(False, "failed to read response body: {error}",
                             error=_error_text(reason))
            else:
                pattern = self.checker.config.expect_body
                assert pattern is not None
                text = b"".join(self.body).decode("utf-8", "replace")
                if pattern.search(text) is None:
                    self._decide(False, "response body failed expectations")
                else:
                    self._decide(True, "")
        self._finish()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _time_out(self) -> None:
        self.timer = None
        if self.exchange is not None and not self.finished:
            self.exchange.abort(ProbeTimeout(f"health check timed out after {self.checker.config.timeout}s"))

    def _decide(self, healthy: bool, message: str, **fields: Any) -> None:
        if self.decided:
            return
        self.decided = True
        if not healthy:
            self.checker.log.info("active health check failed for {host}: " + message,
                                  host=self.host_addr, **fields)
        self.checker._record(self.host, self.host_addr, healthy)
        self.verdict.callback(healthy)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.checker._probe_done(self)
        if not self.verdict.called:
            self.verdict.callback(None)


# -- loading ------------------------------------------------------------------------------------


def load_active_health(
    config: Any,
    upstreams: Sequence[Upstream],
    transport: Any,
    clock: Any,
    context: Any,
    make: Callable[..., ActiveHealthChecker] = ActiveHealthChecker,
) -> ActiveHealthChecker | None:
    """Build a handler's checker from ``health_checks.active`` and hand it to the service tree.

    Returns None when the JSON does not turn active checks on (Caddy needs ``uri``,
    ``path`` or ``port``).
    """
    active = ActiveHealthConfig.from_config(config)
    if active is None:
        context.log.warn(
            "reverse_proxy: active health checks need health_uri, health_path or health_port; "
            "none is set, so they are off")
        return None
    if active.deprecated_path:
        context.log.warn("reverse_proxy: the 'path' option is deprecated, please use 'uri' instead!")
    checker = make(active, upstreams, transport, clock)
    context.services.append(checker)
    return checker
