"""On-demand TLS: a certificate obtained during the handshake of the first client that asks.

certmagic gets the certificate inside Go's ``GetCertificate`` callback, which may block its
goroutine for minutes.  OpenSSL's SNI callback runs on the reactor thread and cannot wait, so
txcaddy waits *before* OpenSSL sees the handshake: ``ClientHelloGate`` holds the connection's
first bytes until the ClientHello is complete, reads the server name from it, and when the
name is one to get a certificate for on demand it asks the manager for one and only then
hands the bytes to TLS; the SNI callback then finds the certificate in the cache.  Servers
with no ``on_demand`` policy never get a gate.

The decision is certmagic v0.17.2's (``handshake.go: checkIfCertShouldBeObtained``, Caddy's
``OnDemandConfig``): the name must qualify for a certificate; when ``ask`` is set, ``GET
<ask>?domain=<name>`` must answer 2xx within 10 s (redirects are not followed); then the
global rate limit (``burst`` decisions per sliding ``interval``) must allow it.  Concurrent
handshakes for one name share one order; an order that has not finished after 180 s fails
the waiting handshakes (the order itself goes on in the background as certmagic's does).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.tls.names import subject_qualifies_for_cert

__all__ = [
    "ASK_TIMEOUT",
    "ON_DEMAND_TIMEOUT",
    "ClientHelloGate",
    "OnDemandConfig",
    "OnDemandGateFactory",
    "RateLimiter",
    "client_hello_server_name",
]

log = Logger()

ASK_TIMEOUT = 10.0
ON_DEMAND_TIMEOUT = 180.0
_MAX_HELLO = 64 * 1024  # more than any real ClientHello; past it, OpenSSL decides


class IncompleteHello(Exception):
    """Not all of the ClientHello has arrived yet."""


def client_hello_server_name(data: bytes) -> str | None:
    """The SNI host name of the TLS ClientHello at the start of ``data``, or None without one.

    Raises ``IncompleteHello`` while the handshake message is still incomplete and
    ``ValueError`` when the bytes are not a ClientHello (OpenSSL then answers them).
    """
    message = bytearray()
    offset = 0
    needed: int | None = None
    while needed is None or len(message) < needed:
        if len(data) < offset + 5:
            raise IncompleteHello()
        content_type, _version, length = struct.unpack_from("!BHH", data, offset)
        if content_type != 22:
            raise ValueError("not a TLS handshake record")
        if len(data) < offset + 5 + length:
            raise IncompleteHello()
        message += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if needed is None and len(message) >= 4:
            if message[0] != 1:
                raise ValueError("not a ClientHello")
            needed = 4 + int.from_bytes(message[1:4], "big")
        if offset > _MAX_HELLO:
            raise ValueError("ClientHello too large")
    return _server_name(bytes(message[4:needed]))


def _server_name(hello: bytes) -> str | None:
    at = 2 + 32  # client_version, random
    at += 1 + hello[at]  # session_id
    at += 2 + int.from_bytes(hello[at : at + 2], "big")  # cipher_suites
    at += 1 + hello[at]  # compression_methods
    if at + 2 > len(hello):
        return None  # no extensions
    end = at + 2 + int.from_bytes(hello[at : at + 2], "big")
    at += 2
    while at + 4 <= end:
        kind, length = struct.unpack_from("!HH", hello, at)
        at += 4
        if kind == 0:  # server_name: a list of (type, name)
            body = hello[at : at + length]
            pos = 2
            while pos + 3 <= len(body):
                name_type, name_length = body[pos], int.from_bytes(body[pos + 1 : pos + 3], "big")
                pos += 3
                if name_type == 0:
                    return body[pos : pos + name_length].decode("ascii", "replace").lower()
                pos += name_length
            return None
        at += length
    return None


class RateLimiter:
    """certmagic's ring-buffer limiter: at most ``burst`` events in any sliding ``interval``.

    A zero ``burst`` or ``interval`` means no limit (Caddy's default without ``rate_limit``).
    """

    def __init__(self, interval: float, burst: int, clock: IReactorTime) -> None:
        self.interval = interval
        self.burst = burst
        self.clock = clock
        self._events: deque[float] = deque()

    def allow(self) -> bool:
        if self.interval <= 0 or self.burst <= 0:
            return True
        now = self.clock.seconds()
        while self._events and now - self._events[0] >= self.interval:
            self._events.popleft()
        if len(self._events) >= self.burst:
            return False
        self._events.append(now)
        return True


class OnDemandConfig:
    """``apps.tls.automation.on_demand``: the ``ask`` endpoint and the rate limit."""

    def __init__(self, config: dict[str, Any] | None, clock: IReactorTime, reactor: Any) -> None:
        config = config or {}
        unknown = sorted(set(config) - {"ask", "rate_limit"})
        if unknown:
            raise ConfigError(f"apps.tls.automation.on_demand: unknown field {unknown[0]!r}")
        self.ask = config.get("ask") or ""
        if self.ask:
            parts = urlsplit(self.ask)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"apps.tls.automation.on_demand.ask: not an http(s) URL: {self.ask!r}")
        rate = config.get("rate_limit") or {}
        interval = duration_seconds(rate.get("interval"), "apps.tls.automation.on_demand.rate_limit.interval") or 0.0
        self.limiter = RateLimiter(interval, int(rate.get("burst") or 0), clock)
        self.reactor = reactor
        if not self.ask and not (interval and rate.get("burst")):
            log.warn("on-demand TLS is enabled without an 'ask' endpoint or a rate limit: YOUR SERVER "
                     "MAY BE VULNERABLE TO ABUSE (anyone can make it order certificates for any name)")

    def ask_url(self, name: str) -> str:
        """``ask`` with ``domain=<name>`` added to its query (other parameters kept)."""
        parts = urlsplit(self.ask)
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("domain", name)]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

    def allowed(self, name: str) -> Deferred[bool]:
        """Whether ``name`` may have a certificate obtained now (ask, then the rate limit)."""
        if not subject_qualifies_for_cert(name):
            return succeed(False)
        if not self.ask:
            return succeed(self.limiter.allow())
        import treq  # the control plane's HTTP client; imported here so serving never loads it

        d: Deferred[Any] = treq.get(self.ask_url(name), allow_redirects=False, timeout=ASK_TIMEOUT,
                                    persistent=False, reactor=self.reactor)

        def answered(response: Any) -> bool:
            if not 200 <= response.code < 300:
                log.info("on-demand certificate for {name} denied by ask endpoint: status {code}",
                         name=name, code=response.code)
                return False
            return self.limiter.allow()

        def failed(failure: Failure) -> bool:
            log.error("on-demand ask endpoint {url} failed for {name}: {error}",
                      url=self.ask, name=name, error=failure.getErrorMessage())
            return False

        return d.addCallbacks(answered, failed)


class ClientHelloGate(ProtocolWrapper):
    """Holds a TLS connection's bytes until its ClientHello is read and, if needed, a
    certificate has been obtained on demand; then steps aside (its ``dataReceived`` becomes
    the TLS protocol's)."""

    factory: OnDemandGateFactory
    transport: Any  # the TCP transport (a producer too), once connected

    def __init__(self, factory: OnDemandGateFactory, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)  # type: ignore[arg-type]
        self._held = bytearray()
        self._waiting = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._waiting:
            self._held += data
            return
        self._held += data
        try:
            name = client_hello_server_name(bytes(self._held))
        except IncompleteHello:
            return
        except (ValueError, IndexError, struct.error):
            self._release()  # not a ClientHello we can read: OpenSSL answers it
            return
        ready = self.factory.prepare(name) if name else None
        if ready is None:
            self._release()
            return
        self._waiting = True
        self.transport.pauseProducing()
        ready.addBoth(self._ready)

    def _ready(self, result: Any) -> None:
        if isinstance(result, Failure):
            log.info("on-demand certificate not available: {error}", error=result.getErrorMessage())
        if self.transport is None or self.disconnecting:
            return
        self._waiting = False
        self.transport.resumeProducing()
        self._release()

    def _release(self) -> None:
        held, self._held = bytes(self._held), bytearray()
        self.dataReceived = self.wrappedProtocol.dataReceived  # type: ignore[method-assign]
        if held:
            self.wrappedProtocol.dataReceived(held)


class OnDemandGateFactory(WrappingFactory):
    """Wraps a server's TLS factory with ``ClientHelloGate``s.

    ``prepare(name)`` is the TLS app's: None when nothing has to happen for ``name`` (a
    certificate is cached, or the name is not one for on-demand TLS), else a Deferred that
    fires once the certificate is there or will not be.
    """

    protocol = ClientHelloGate

    def __init__(self, wrappedFactory: Any, prepare: Callable[[str], Deferred[Any] | None]) -> None:
        super().__init__(wrappedFactory)
        self.prepare = prepare
