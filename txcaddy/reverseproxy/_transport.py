"""The ``http`` transport of reverse_proxy (Caddy's ``HTTPTransport``), loaded from its JSON.

``HTTPTransport.from_config`` reads the ``transport`` object of ``http.handlers.reverse_proxy``
once, applies Caddy's defaults (including its keep-alive quirk: the defaults apply only when
there is no ``keep_alive`` object at all; txcaddy's own ``keep_alive.surplus_linger`` does not
count) and builds the connection pool.  Per request it only decides plain HTTP, h2c or TLS,
and for TLS which server name, then hands over to the pool.  As in Caddy
(``httptransport.go``: ``RoundTrip``), ``"h2c"`` in ``versions`` sends every plain-HTTP
request over HTTP/2 with prior knowledge (no HTTP/1.1 fallback) through a second pool of
HTTP/2 connections (``_h2connection``); upgrade requests (WebSocket) still use HTTP/1.1.
With ``"2"`` in ``versions`` (the default), TLS upstreams are offered ALPN ``h2, http/1.1`` and
served over whichever they pick, in one pool (``_alpn``); upgrade requests are dialled offering
only ``http/1.1``, in the HTTP/1.1 pool (Go's ``onlyH1``).  Without ``"2"``, TLS upstreams get HTTP/1.1.
``_alpn`` and ``_h2connection`` (which load ``h2``, 1.3 MB) are imported only by a transport that
makes one of those pools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from txcaddy._reactor import IServingReactor, default_reactor
from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, BOOL, DURATION, INT, STRING, STRINGS, Obj
from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IUpstreamTransport
from txcaddy.reverseproxy._dial import DEFAULT_READ_SIZE, UpstreamAddress
from txcaddy.reverseproxy._exchange import Exchange, RawHeaders, ResponseHead
from txcaddy.reverseproxy._h1connection import ConnectionPool
from txcaddy.reverseproxy._pool import SURPLUS_LINGER
from txcaddy.reverseproxy._resolver import (
    NamesHostnameResolver,
    ReactorWithResolver,
    parse_resolver_addresses,
)
from txcaddy.tls.context import UpstreamTLS

if TYPE_CHECKING:
    from txcaddy.reverseproxy._alpn import AlpnPool
    from txcaddy.reverseproxy._h2connection import H2Pool

_WHERE = "reverse_proxy transport http"
_FIELDS = frozenset((
    "protocol", "resolver", "tls", "keep_alive", "compression", "max_conns_per_host",
    "dial_timeout", "dial_fallback_delay", "response_header_timeout", "expect_continue_timeout",
    "max_response_header_size", "write_buffer_size", "read_buffer_size", "read_timeout",
    "write_timeout", "versions",
))
_KEEP_ALIVE_FIELDS = frozenset((
    "enabled", "probe_interval", "max_idle_conns", "max_idle_conns_per_host", "idle_timeout",
    "surplus_linger"))

# Caddy's own defaults (httptransport.go) and Go's where Caddy leaves a zero value.
DEFAULT_DIAL_TIMEOUT = 3.0
DEFAULT_FALLBACK_DELAY = 0.3  # Go's net.Dialer
DEFAULT_MAX_RESPONSE_HEADER_SIZE = 10 << 20
DEFAULT_VERSIONS = ("1.1", "2")
CADDY_KEEP_ALIVE_PROBE = 30.0
CADDY_KEEP_ALIVE_IDLE_TIMEOUT = 120.0
CADDY_KEEP_ALIVE_IDLE_PER_HOST = 32
GO_KEEP_ALIVE_PROBE = 15.0  # net.Dialer with KeepAlive 0
GO_IDLE_PER_HOST = 2  # http.DefaultMaxIdleConnsPerHost

def _duration(field: str, value: Any) -> float | None:
    """A ``caddy.Duration`` field in seconds (None when absent)."""
    return duration_seconds(value, f"{_WHERE}: {field}")


def _integer(config: dict[str, Any], field: str, where: str = _WHERE) -> int:
    value = config.get(field, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {field} must be an integer, got {value!r}")
    return value


def _positive(seconds: float | None) -> float | None:
    """Go arms these timers only for positive durations."""
    return seconds if seconds is not None and seconds > 0 else None


@implementer(IUpstreamTransport)
class HTTPTransport:
    """Caddy's ``http`` transport: a keep-alive pool, TLS settings and the HTTP versions.

    ``tls`` is True when the transport speaks TLS to upstreams (``tls_config`` holds the
    settings; ports in ``except_ports`` still get plain HTTP).  ``compression`` is Caddy's
    ``compression`` option (Go asks upstreams for gzip and decodes it transparently when the
    client did not ask for an encoding); the handler applies it.  ``h2_pool`` (with ``"h2c"``
    in ``versions``) carries the plain-HTTP requests over h2c; ``alpn_pool`` (with ``"2"`` and
    TLS) the TLS ones but upgrades, over HTTP/2 or HTTP/1.1 as ALPN decides.  ``unsupported_reason`` is
    None: every configuration this transport loads can be served.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        tls_config: UpstreamTLS | None = None,
        compression: bool = True,
        versions: tuple[str, ...] = DEFAULT_VERSIONS,
        log: Logger | None = None,
        h2_pool: H2Pool | None = None,
        alpn_pool: AlpnPool | None = None,
    ) -> None:
        self.pool = pool
        self.tls_config = tls_config
        self.tls = tls_config is not None
        self.compression = compression
        self.versions = versions
        self.h2c = "h2c" in versions
        if self.h2c and h2_pool is None:
            # imported on first use (module docstring)
            from txcaddy.reverseproxy._h2connection import H2Pool

            h2_pool = H2Pool(pool.reactor, dial_timeout=pool.dial_timeout,
                             endpoint_factory=pool.endpoint_factory)
        self.h2_pool = h2_pool if self.h2c else None
        #: HTTPS connections offering ALPN h2 (``"2"`` in ``versions``), or None.
        self.alpn_pool: AlpnPool | None = None
        #: The ALPN protocols the ``alpn_pool``'s connections offer.
        self._alpn_protocols: tuple[bytes, ...] = ()
        if "2" in versions and tls_config is not None:
            # imported on first use (module docstring)
            from txcaddy.reverseproxy._alpn import ALPN_H2_H1, AlpnPool

            self.alpn_pool = alpn_pool or AlpnPool(pool.reactor, **pool.options)
            self._alpn_protocols = ALPN_H2_H1
        self.unsupported_reason: str | None = None
        self.log = log or Logger(namespace="txcaddy.reverseproxy")

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, reactor: IServingReactor | None = None,
                    log: Logger | None = None) -> HTTPTransport:
        """Load the JSON ``transport`` object (with or without ``"protocol": "http"``)."""
        reactor = default_reactor(reactor)
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise ConfigError(f"{_WHERE}: the transport must be a JSON object")
        protocol = config.get("protocol", "http")
        if protocol != "http":
            raise ConfigError(f"{_WHERE}: protocol must be 'http', got {protocol!r}")
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise ConfigError(f'{_WHERE}: unknown field "{unknown[0]}"')

        keep_alive = config.get("keep_alive")
        surplus_linger = SURPLUS_LINGER
        if isinstance(keep_alive, dict) and "surplus_linger" in keep_alive:
            # txcaddy's own option: it does not count for Caddy's quirk below.
            keep_alive = dict(keep_alive)
            linger = _duration("keep_alive.surplus_linger", keep_alive.pop("surplus_linger"))
            if linger is not None:
                if linger < 0:
                    raise ConfigError(f"{_WHERE}: keep_alive.surplus_linger must not be negative")
                surplus_linger = linger
            if not keep_alive:
                keep_alive = None
        if keep_alive is None:
            enabled = True
            probe: float | None = CADDY_KEEP_ALIVE_PROBE
            idle_timeout: float | None = CADDY_KEEP_ALIVE_IDLE_TIMEOUT
            max_idle = 0
            idle_per_host = CADDY_KEEP_ALIVE_IDLE_PER_HOST
        else:
            if not isinstance(keep_alive, dict):
                raise ConfigError(f"{_WHERE}: keep_alive must be a JSON object")
            unknown = sorted(set(keep_alive) - _KEEP_ALIVE_FIELDS)
            if unknown:
                raise ConfigError(f'{_WHERE}: keep_alive: unknown field "{unknown[0]}"')
            enabled = keep_alive.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{_WHERE}: keep_alive.enabled must be a boolean")
            # Caddy's quirk: with a keep_alive object, unset fields keep Go's zero values.
            probe = _duration("keep_alive.probe_interval", keep_alive.get("probe_interval")) or 0.0
            probe = GO_KEEP_ALIVE_PROBE if probe == 0 else _positive(probe)
            idle_timeout = _positive(
                _duration("keep_alive.idle_timeout", keep_alive.get("idle_timeout")))
            max_idle = _integer(keep_alive, "max_idle_conns", f"{_WHERE}: keep_alive")
            idle_per_host = _integer(keep_alive, "max_idle_conns_per_host", f"{_WHERE}: keep_alive")
            if idle_per_host == 0:
                idle_per_host = GO_IDLE_PER_HOST
            idle_per_host = max(idle_per_host, 0)

        compression = config.get("compression", True)
        if compression is None:
            compression = True
        if not isinstance(compression, bool):
            raise ConfigError(f"{_WHERE}: compression must be a boolean")

        versions = config.get("versions") or list(DEFAULT_VERSIONS)
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigError(f"{_WHERE}: versions must be a list of strings")

        dial_timeout = _duration("dial_timeout", config.get("dial_timeout")) or DEFAULT_DIAL_TIMEOUT
        fallback = _duration("dial_fallback_delay", config.get("dial_fallback_delay")) or 0.0
        if fallback == 0:
            attempt_delay = DEFAULT_FALLBACK_DELAY
        elif fallback > 0:
            attempt_delay = fallback
        else:
            # Go then dials the addresses one after the other; HostnameEndpoint only staggers,
            # so give each attempt the whole dial timeout before starting the next.
            attempt_delay = max(dial_timeout, 0.0)
        max_header = _integer(config, "max_response_header_size") or DEFAULT_MAX_RESPONSE_HEADER_SIZE
        read_buffer = _integer(config, "read_buffer_size")
        _integer(config, "write_buffer_size")  # validated; see docs: no effect on Twisted writes

        tls_config = None
        if config.get("tls") is not None:
            tls_config = UpstreamTLS.from_config(config["tls"], _duration)

        name_reactor: Any = reactor  # the reactor, or one resolving with the configured servers
        if config.get("resolver") is not None:
            resolver = config["resolver"]
            if not isinstance(resolver, dict):
                raise ConfigError(f"{_WHERE}: resolver must be a JSON object")
            unknown = sorted(set(resolver) - {"addresses"})
            if unknown:
                raise ConfigError(f'{_WHERE}: resolver: unknown field "{unknown[0]}"')
            servers = parse_resolver_addresses(resolver.get("addresses"))
            name_reactor = ReactorWithResolver(
                reactor, NamesHostnameResolver.for_servers(servers, reactor))

        def endpoint_for(address: UpstreamAddress) -> Any:
            return address.endpoint(name_reactor, attempt_delay=attempt_delay)

        pool = ConnectionPool(
            reactor,
            max_idle_per_host=idle_per_host,
            idle_timeout=idle_timeout,
            max_conns_per_host=max(_integer(config, "max_conns_per_host"), 0),
            dial_timeout=dial_timeout,
            response_header_timeout=_positive(
                _duration("response_header_timeout", config.get("response_header_timeout"))),
            max_response_header_size=max_header,
            keep_alive=enabled,
            max_idle_conns=max_idle,
            read_timeout=_positive(_duration("read_timeout", config.get("read_timeout"))),
            write_timeout=_positive(_duration("write_timeout", config.get("write_timeout"))),
            expect_continue_timeout=_positive(
                _duration("expect_continue_timeout", config.get("expect_continue_timeout"))),
            tls_handshake_timeout=_positive(tls_config.handshake_timeout) if tls_config else None,
            tcp_keepalive=probe,
            read_size=read_buffer if read_buffer > DEFAULT_READ_SIZE else None,
            endpoint_factory=endpoint_for,
            surplus_linger=surplus_linger,
        )
        h2_pool = None
        if "h2c" in versions:
            # imported on first use (module docstring)
            from txcaddy.reverseproxy._h2connection import H2Pool

            h2_pool = H2Pool(
                reactor,
                response_header_timeout=pool.response_header_timeout,
                read_timeout=pool.read_timeout,
                write_timeout=pool.write_timeout,
                keep_alive=enabled,
                max_idle_per_host=idle_per_host,
                idle_timeout=idle_timeout,
                max_conns_per_host=pool.max_conns_per_host,
                dial_timeout=dial_timeout,
                max_idle_conns=max_idle,
                tcp_keepalive=probe,
                read_size=pool.read_size,
                endpoint_factory=endpoint_for,
                surplus_linger=surplus_linger,
            )
        return cls(pool, tls_config=tls_config, compression=compression,
                   versions=tuple(versions), log=log, h2_pool=h2_pool)

    def uses_tls(self, address: UpstreamAddress) -> bool:
        """Whether requests to ``address`` go over TLS (Caddy's ``shouldUseTLS``)."""
        tls = self.tls_config
        return tls is not None and tls.applies_to(address.port)

    def request(
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
        request: Any = None,
    ) -> Exchange:
        """Send a request to ``address`` (see ``ConnectionPool.request``).

        ``request`` is the client's request, used to render a ``tls.server_name`` holding
        placeholders.
        """
        tls = self.tls_config
        if tls is not None and tls.applies_to(address.port):
            host = address.host if address.network != "unix" else ""
            alpn_pool = self.alpn_pool
            if alpn_pool is not None and not any(name.lower() == b"upgrade"
                                                 for name, _ in headers):
                return alpn_pool.request(  # type: ignore[return-value]
                    address, method, target, headers, body_length, on_informational,
                    tls=tls.creator_for(host, request, self._alpn_protocols))
            creator = tls.creator_for(host, request)
            return self.pool.request(address, method, target, headers, body_length,
                                     on_informational, tls=creator)
        h2_pool = self.h2_pool
        if h2_pool is not None and not any(name.lower() == b"upgrade" for name, _ in headers):
            # Caddy: h2c for every plain-HTTP request; an upgrade (WebSocket) stays HTTP/1.1.
            return h2_pool.request(address, method, target, headers, body_length,
                                   on_informational)
        return self.pool.request(address, method, target, headers, body_length, on_informational)

    def close_idle(self) -> Deferred[None]:
        """Close idle upstream connections (Caddy's ``Cleanup`` when a config is unloaded).

        The Deferred fires once they are closed.
        """
        pools = [p for p in (self.pool, self.h2_pool, self.alpn_pool) if p is not None]
        if len(pools) == 1:
            return self.pool.close_idle()
        return DeferredList([p.close_idle() for p in pools],
                            consumeErrors=True).addCallback(lambda _: None)


@module("http.reverse_proxy.transport.http", schema=Obj(
    {
        "resolver": Obj({"addresses": STRINGS}), "tls": ANY,
        "keep_alive": Obj(
            {"enabled": BOOL, "probe_interval": DURATION, "max_idle_conns": INT, "max_idle_conns_per_host": INT,
             "idle_timeout": DURATION}
        ),
        "compression": BOOL, "max_conns_per_host": INT, "dial_timeout": DURATION, "dial_fallback_delay": DURATION,
        "response_header_timeout": DURATION, "expect_continue_timeout": DURATION,
        "max_response_header_size": INT, "write_buffer_size": INT, "read_buffer_size": INT,
        "read_timeout": DURATION, "write_timeout": DURATION, "versions": STRINGS, "proxy_protocol": STRING,
    },
))
def load_http_transport(config: dict[str, Any], context: Any) -> HTTPTransport:
    return HTTPTransport.from_config(config, context.reactor, log=context.log)
