"""The ``http`` transport module: Caddy's JSON options, their defaults and quirks, the HTTP versions,
and what the loaded transport does with real sockets."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server

from tests._net import listen_local, port_number
from tests.reverseproxy._client import (
    ADDR,
    HOST,
    Hello,
    PoolTestCase,
    TrackedFactory,
    dns_server,
    fetch,
    load_transport,
)
from txcaddy._reactor import default_reactor
from txcaddy.errors import ConfigError
from txcaddy.reverseproxy._h2connection import H2Exchange
from txcaddy.reverseproxy.transport import (
    DialError,
    FastCGITransport,
    HTTPTransport,
    ResponseHeaderTimeout,
    UpstreamAddress,
    UpstreamProtocolError,
)


def _pool_settings(pool):
    return {
        "dial_timeout": pool.dial_timeout,
        "response_header_timeout": pool.response_header_timeout,
        "max_response_header_size": pool.max_response_header_size,
        "max_idle_per_host": pool.max_idle_per_host,
        "max_idle_conns": pool.max_idle_conns,
        "idle_timeout": pool.idle_timeout,
        "max_conns_per_host": pool.max_conns_per_host,
        "keep_alive": pool.keep_alive,
        "tcp_keepalive": pool.tcp_keepalive,
        "read_timeout": pool.read_timeout,
        "write_timeout": pool.write_timeout,
        "expect_continue_timeout": pool.expect_continue_timeout,
        "tls_handshake_timeout": pool.tls_handshake_timeout,
        "read_size": pool.read_size,
        "surplus_linger": pool.surplus_linger,
    }


CADDY_DEFAULTS = {
    "dial_timeout": 3.0,
    "response_header_timeout": None,
    "max_response_header_size": 10 << 20,
    "max_idle_per_host": 32,
    "max_idle_conns": 0,
    "idle_timeout": 120.0,
    "max_conns_per_host": 0,
    "keep_alive": True,
    "tcp_keepalive": 30.0,
    "read_timeout": None,
    "write_timeout": None,
    "expect_continue_timeout": None,
    "tls_handshake_timeout": None,
    "read_size": None,
    "surplus_linger": 1.0,  # txcaddy's own (Caddy: 0, the surplus closes at once)
}


class TransportConfigTests(SynchronousTestCase):
    """Loading the JSON ``transport`` object with Caddy's defaults."""

    def test_defaults(self) -> None:
        """No options (or just the protocol) give Caddy's defaults."""
        for config in (None, {}, {"protocol": "http"}):
            transport = load_transport(config)
            self.assertEqual(_pool_settings(transport.pool), CADDY_DEFAULTS)
            self.assertEqual(transport.versions, ("1.1", "2"))
            self.assertIs(transport.compression, True)
            self.assertIs(transport.tls, False)
            self.assertIsNone(transport.tls_config)
            self.assertIsNone(transport.unsupported_reason)

    def test_every_option(self) -> None:
        """Every JSON option reaches the pool, durations as strings or nanoseconds."""
        transport = load_transport({
            "protocol": "http",
            "dial_timeout": "5s",
            "dial_fallback_delay": "150ms",
            "response_header_timeout": "30s",
            "expect_continue_timeout": "1s",
            "max_response_header_size": 4096,
            "read_buffer_size": 131072,
            "write_buffer_size": 8192,
            "read_timeout": "10s",
            "write_timeout": 2_000_000_000,  # JSON integers are nanoseconds
            "max_conns_per_host": 7,
            "compression": False,
            "versions": ["1.1"],
            "keep_alive": {"enabled": True, "probe_interval": "5s", "max_idle_conns": 50,
                           "max_idle_conns_per_host": 9, "idle_timeout": "1m",
                           "surplus_linger": "250ms"},
        })
        self.assertEqual(_pool_settings(transport.pool), {
            "dial_timeout": 5.0,
            "response_header_timeout": 30.0,
            "max_response_header_size": 4096,
            "max_idle_per_host": 9,
            "max_idle_conns": 50,
            "idle_timeout": 60.0,
            "max_conns_per_host": 7,
            "keep_alive": True,
            "tcp_keepalive": 5.0,
            "read_timeout": 10.0,
            "write_timeout": 2.0,
            "expect_continue_timeout": 1.0,
            "tls_handshake_timeout": None,
            "read_size": 131072,
            "surplus_linger": 0.25,
        })
        self.assertIs(transport.compression, False)
        self.assertEqual(transport.versions, ("1.1",))
        endpoint = transport.pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertEqual(endpoint._attemptDelay, 0.15)

    def test_keep_alive_defaults_only_without_any_keep_alive_option(self) -> None:
        """Caddy's quirk: one keep_alive field leaves the others at Go's zero-value defaults."""
        idle_only = _pool_settings(load_transport({"keep_alive": {"idle_timeout": 90_000_000_000}}).pool)
        self.assertEqual(
            (idle_only["idle_timeout"], idle_only["max_idle_per_host"],
             idle_only["tcp_keepalive"], idle_only["max_idle_conns"]),
            (90.0, 2, 15.0, 0))
        per_host = _pool_settings(load_transport({"keep_alive": {"max_idle_conns_per_host": 10}}).pool)
        self.assertEqual(
            (per_host["idle_timeout"], per_host["max_idle_per_host"], per_host["tcp_keepalive"]),
            (None, 10, 15.0))
        empty = _pool_settings(load_transport({"keep_alive": {}}).pool)
        self.assertEqual((empty["idle_timeout"], empty["max_idle_per_host"]), (None, 2))
        no_probes = load_transport({"keep_alive": {"probe_interval": "-1s",
                                          "max_idle_conns_per_host": -1}}).pool
        self.assertEqual((no_probes.tcp_keepalive, no_probes.max_idle_per_host), (None, 0))

    def test_keep_alive_off(self) -> None:
        """``keep_alive.enabled: false`` turns keep-alive off."""
        pool = load_transport({"keep_alive": {"enabled": False}}).pool
        self.assertIs(pool.keep_alive, False)

    def test_small_read_buffer_keeps_the_default_read_size(self) -> None:
        """A ``read_buffer_size`` below 64 KiB leaves Twisted's read size alone."""
        self.assertIsNone(load_transport({"read_buffer_size": 4096}).pool.read_size)

    def test_dial_fallback_delay(self) -> None:
        """``dial_fallback_delay`` staggers addresses; negative gives each the whole dial timeout."""
        hostname = UpstreamAddress.parse("backend.test:80")
        self.assertEqual(load_transport({}).pool.endpoint_factory(hostname)._attemptDelay, 0.3)
        serial = load_transport({"dial_fallback_delay": "-1s", "dial_timeout": "2s"}).pool
        self.assertEqual(serial.endpoint_factory(hostname)._attemptDelay, 2.0)

    def test_negative_timeouts_are_off(self) -> None:
        """Negative durations turn their timeouts off."""
        pool = load_transport({"response_header_timeout": "-1s", "read_timeout": "-1s",
                      "keep_alive": {"idle_timeout": "-5s"}}).pool
        self.assertEqual((pool.response_header_timeout, pool.read_timeout, pool.idle_timeout),
                         (None, None, None))

    def test_unknown_fields_are_named(self) -> None:
        """Unknown fields, nested ones too, are config errors naming the field."""
        cases = [
            ({"read_buffer": 4096}, 'unknown field "read_buffer"'),
            ({"keep_alive": {"idle_conn_timeout": "1m"}}, 'keep_alive: unknown field "idle_conn_timeout"'),
            ({"tls": {"trusted_ca_certs": []}}, 'tls: unknown field "trusted_ca_certs"'),
            ({"resolver": {"servers": []}}, 'resolver: unknown field "servers"'),
        ]
        for config, message in cases:
            error = self.assertRaises(ConfigError, load_transport, config)
            self.assertIn(message, str(error))

    def test_bad_values(self) -> None:
        """Values of the wrong type or form are config errors."""
        config: dict[str, Any]
        for config in (
            {"dial_timeout": "soon"},
            {"dial_timeout": 1.5},
            {"max_conns_per_host": "3"},
            {"compression": "off"},
            {"versions": "1.1"},
            {"keep_alive": {"enabled": "no"}},
            {"keep_alive": []},
            {"keep_alive": {"surplus_linger": "a while"}},
            {"keep_alive": {"surplus_linger": "-1s"}},
            {"protocol": "fastcgi"},
            {"resolver": {"addresses": []}},
            {"tls": {"renegotiation": "sometimes"}},
        ):
            self.assertRaises(ConfigError, load_transport, config)

    def test_registered_module(self) -> None:
        """``http.reverse_proxy.transport.http`` and ``.fastcgi`` load as their transports."""
        from txcaddy.config.loader import LoadContext

        context = LoadContext(reactor=MemoryReactorClock())
        transport = context.load_module(
            "http.reverse_proxy.transport", {"protocol": "http", "dial_timeout": "1s"}, "protocol")
        self.assertIsInstance(transport, HTTPTransport)
        self.assertEqual(transport.pool.dial_timeout, 1.0)
        fastcgi = context.load_module(
            "http.reverse_proxy.transport", {"protocol": "fastcgi", "root": "/srv"}, "protocol")
        self.assertIsInstance(fastcgi, FastCGITransport)
        self.assertEqual(fastcgi.root.text, "/srv")


class VersionsTests(SynchronousTestCase):
    def test_h2c_sends_plain_requests_over_http2(self) -> None:
        """``h2c`` loads and a plain-HTTP request dials through the HTTP/2 pool (no 1.1 fallback)."""
        reactor = MemoryReactorClock()
        transport = load_transport({"versions": ["h2c", "2"]}, reactor)
        self.assertIsNone(transport.unsupported_reason)
        exchange = transport.request(ADDR, b"GET", b"/", HOST)
        self.assertIsInstance(exchange, H2Exchange)
        self.assertEqual((transport.h2_pool.open_count(ADDR), transport.pool.open_count(ADDR)),
                         (1, 0))
        self.assertEqual(len(reactor.tcpClients), 1)

    def test_h2c_upgrade_requests_stay_http_1_1(self) -> None:
        """An upgrade request (WebSocket) through an h2c transport uses HTTP/1.1, as Caddy does."""
        reactor = MemoryReactorClock()
        transport = load_transport({"versions": ["h2c", "2"]}, reactor)
        exchange = transport.request(ADDR, b"GET", b"/", HOST + [
            (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
        self.assertNotIsInstance(exchange, H2Exchange)
        self.assertEqual((transport.h2_pool.open_count(ADDR), transport.pool.open_count(ADDR)),
                         (0, 1))

    def test_h2c_with_tls_only_for_except_ports(self) -> None:
        """With TLS, ``h2c`` applies to requests to ``except_ports``; TLS ones stay HTTP/1.1."""
        reactor = MemoryReactorClock()
        transport = load_transport({"versions": ["h2c", "2"],
                           "tls": {"insecure_skip_verify": True, "except_ports": ["9000"]}},
                          reactor)
        self.assertIsInstance(transport.request(ADDR, b"GET", b"/", HOST), H2Exchange)
        tls_addr = UpstreamAddress.parse("127.0.0.1:443")
        self.assertNotIsInstance(transport.request(tls_addr, b"GET", b"/", HOST), H2Exchange)
        self.assertEqual(len(reactor.tcpClients), 2)

    def test_version_2_without_tls_speaks_http_1_1(self) -> None:
        """As Caddy: "2" only matters through TLS ALPN; plain upstreams get HTTP/1.1."""
        reactor = MemoryReactorClock()
        transport = load_transport({"versions": ["2"]}, reactor)
        self.assertIsNone(transport.unsupported_reason)
        transport.request(ADDR, b"GET", b"/", HOST)
        self.assertEqual(len(reactor.tcpClients), 1)


class LoadedTimeoutTests(PoolTestCase):
    """Each timeout loaded from JSON ends the request with Caddy's status."""

    def test_dial_timeout_is_a_502_dial_error(self) -> None:
        """A loaded ``dial_timeout`` expiring is a 502 ``DialError``."""
        self.pool = load_transport({"dial_timeout": "1s"}, self.reactor).pool
        _, _, _, failures = self.start()
        self.reactor.advance(0.999)
        self.assertEqual(failures, [])
        self.reactor.advance(0.001)
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(failures[0].value.status, 502)

    def test_response_header_timeout_is_a_504(self) -> None:
        """A loaded ``response_header_timeout`` expiring is a 504."""
        self.pool = load_transport({"response_header_timeout": "2s"}, self.reactor).pool
        _, _, _, failures = self.start()
        self.connect()
        self.reactor.advance(2)
        self.assertTrue(failures[0].check(ResponseHeaderTimeout))
        self.assertEqual(failures[0].value.status, 504)

    def test_oversized_head_in_one_packet_is_a_502(self) -> None:
        """A head past ``max_response_header_size`` in one read is a 502 naming the limit."""
        self.pool = load_transport({"max_response_header_size": 64}, self.reactor).pool
        _, _, _, failures = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60 + b"\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertIn("exceeded 64 bytes", str(failures[0].value))
        self.assertTrue(transport.disconnecting)


class RealSocketTests(TestCase):
    def setUp(self) -> None:
        self.reactor = default_reactor()

    def backend(self) -> int:
        site = server.Site(Hello(), reactor=self.reactor, timeout=None)
        factory = TrackedFactory(site)
        port = listen_local(factory, reactor=self.reactor)
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.all_closed)
        return port_number(port)

    @defer.inlineCallbacks
    def test_resolver_addresses(self):
        """``backend.test`` is looked up with a DNS server of ours, then dialled."""
        http_port = self.backend()
        resolver = dns_server(self, {b"backend.test": [dns.Record_A("127.0.0.1", ttl=60)]})
        transport = HTTPTransport.from_config({"resolver": {"addresses": [resolver]}},
                                              self.reactor)
        self.addCleanup(transport.close_idle)
        result = yield fetch(transport, UpstreamAddress.parse(f"backend.test:{http_port}"))
        self.assertEqual(result, (200, b"hello over plain http"))

    @defer.inlineCallbacks
    def test_keepalive_probes_and_read_size_on_the_socket(self):
        """The socket gets SO_KEEPALIVE with the probe interval, and the larger read size."""
        port = self.backend()
        address = UpstreamAddress.parse(f"127.0.0.1:{port}")
        transport = HTTPTransport.from_config({"read_buffer_size": 1 << 20}, self.reactor)
        self.addCleanup(transport.close_idle)
        result = yield fetch(transport, address)
        self.assertEqual(result[0], 200)
        conn = transport.pool._hosts[address.key].idle[0]
        sock = conn.transport.getHandle()
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 30)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 30)
        self.assertEqual(conn.transport.bufferSize, 1 << 20)


class SurplusLingerOptionTests(PoolTestCase):
    """``keep_alive.surplus_linger``: the JSON option, and what the loaded pool does with it."""

    def loaded(self, keep_alive: dict[str, Any] | None) -> tuple[Any, Any]:
        """Two connections answered through a loaded transport keeping one idle per host."""
        config: dict[str, Any] = {"keep_alive": {"max_idle_conns_per_host": 1, **(keep_alive or {})}}
        self.pool = load_transport(config, self.reactor).pool
        self.start()
        self.start()
        (p1, t1), (p2, t2) = self.connect(0), self.connect(1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        return t1, t2

    def test_parsed_as_a_duration(self) -> None:
        """Absent it is 1 s; else a duration (string or nanoseconds); negative is a config error."""
        self.assertEqual(load_transport(None).pool.surplus_linger, 1.0)
        self.assertEqual(load_transport({"keep_alive": {}}).pool.surplus_linger, 1.0)
        for value, seconds in (("0s", 0.0), (0, 0.0), ("1.5s", 1.5), (2_000_000_000, 2.0)):
            pool = load_transport({"keep_alive": {"surplus_linger": value}}).pool
            self.assertEqual(pool.surplus_linger, seconds, value)

    def test_alone_keeps_caddys_keep_alive_defaults(self) -> None:
        """Only ``surplus_linger`` in ``keep_alive``: Caddy's defaults stay (it is not Caddy's field)."""
        settings = _pool_settings(load_transport({"keep_alive": {"surplus_linger": "3s"}}).pool)
        self.assertEqual(settings, {**CADDY_DEFAULTS, "surplus_linger": 3.0})
        with_idle = _pool_settings(load_transport(
            {"keep_alive": {"surplus_linger": "3s", "idle_timeout": "1m"}}).pool)
        self.assertEqual((with_idle["max_idle_per_host"], with_idle["surplus_linger"]), (2, 3.0))

    def test_default_lingers_one_second(self) -> None:
        """Without the option the surplus connection closes after 1 s idle (the oldest)."""
        t1, t2 = self.loaded(None)
        self.reactor.advance(0.99)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(0.01)
        self.assertEqual((t1.disconnecting, t2.disconnecting), (True, False))

    def test_zero_is_caddys_behaviour(self) -> None:
        """``surplus_linger: 0`` closes the connection beyond the idle limit at once."""
        t1, t2 = self.loaded({"surplus_linger": 0})
        self.assertEqual((t1.disconnecting, t2.disconnecting), (False, True))
        self.assertEqual(self.pool.idle_count(ADDR), 1)


class TransportCloseIdleTests(PoolTestCase):
    """``HTTPTransport.close_idle``: the unload hook's Deferred."""

    def test_fires_when_the_idle_connections_are_closed(self) -> None:
        """The transport returns the pool's Deferred, fired by the last ``connectionLost``."""
        transport = load_transport(None, self.reactor)
        self.pool = transport.pool
        self.start()
        proto, transport_ = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        closed = transport.close_idle()
        self.assertTrue(transport_.disconnecting)
        self.assertNoResult(closed)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(closed))

    def test_handler_unload_returns_it(self) -> None:
        """The reverse_proxy transport's unload hook (its release) returns the transport's Deferred."""
        from txcaddy.config.loader import LoadContext
        from txcaddy.reverseproxy.handler import load_reverse_proxy

        context = LoadContext(reactor=self.reactor)
        load_reverse_proxy({"upstreams": [{"dial": "127.0.0.1:9000"}]}, context)
        release, handler_unload = context.unload_hooks
        self.assertIsNone(handler_unload())
        self.assertIsNone(self.successResultOf(release()))
