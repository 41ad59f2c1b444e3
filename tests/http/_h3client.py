"""An HTTP/3 client for tests: aioquic's client ``QuicConnection`` and ``H3Connection``,
driven by hand (datagrams in, datagrams out), in memory or over a Twisted UDP port."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol


@dataclass
class Exchange:
    """What came back on one request stream."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None
    interim: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    done: Deferred[Exchange] = field(default_factory=Deferred)

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H3Client:
    """One HTTP/3 client connection; ``send(data, addr)`` carries its datagrams."""

    def __init__(
        self, clock: Callable[[], float], send: Callable[[bytes, Any], None], server_name: str = "example.com",
        cafile: str | None = None,
    ) -> None:
        config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN), server_name=server_name)
        if cafile is None:
            config.verify_mode = ssl.CERT_NONE
        else:
            config.load_verify_locations(cafile)
        self.clock = clock
        self.send = send
        self.quic = QuicConnection(configuration=config)
        self.h3 = H3Connection(self.quic)
        self.exchanges: dict[int, Exchange] = {}
        self.terminated: Any = None
        self.handshake = False

    def connect(self, addr: Any) -> None:
        self.quic.connect(addr, now=self.clock())
        self.transmit()

    def request(
        self, method: bytes, path: bytes, authority: bytes = b"example.com", headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        body: bytes | None = None, end: bool = True,
    ) -> tuple[int, Exchange]:
        stream_id = self.quic.get_next_available_stream_id()
        fields = [(b":method", method), (b":scheme", b"https"), (b":authority", authority), (b":path", path), *headers]
        self.h3.send_headers(stream_id, fields, end_stream=body is None and end)
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=end)
        exchange = self.exchanges[stream_id] = Exchange()
        self.transmit()
        return stream_id, exchange

    def send_body(self, stream_id: int, data: bytes, end: bool) -> None:
        self.h3.send_data(stream_id, data, end_stream=end)
        self.transmit()

    def receive(self, data: bytes, addr: Any) -> None:
        self.quic.receive_datagram(data, addr, now=self.clock())
        self.process()
        self.transmit()

    def tick(self) -> None:
        """Run the QUIC timer if it is due."""
        deadline = self.quic.get_timer()
        if deadline is not None and deadline <= self.clock():
            self.quic.handle_timer(now=self.clock())
            self.process()
            self.transmit()

    def process(self) -> None:
        while True:
            event = self.quic.next_event()
            if event is None:
                return
            if isinstance(event, quic_events.HandshakeCompleted):
                self.handshake = True
            elif isinstance(event, quic_events.ConnectionTerminated):
                self.terminated = event
            elif isinstance(event, quic_events.StreamReset) and event.stream_id in self.exchanges:
                exchange = self.exchanges[event.stream_id]
                exchange.reset = event.error_code
                if not exchange.done.called:
                    exchange.done.callback(exchange)
            for h3_event in self.h3.handle_event(event):
                found = self.exchanges.get(getattr(h3_event, "stream_id", -1))
                if found is None:
                    continue
                exchange = found
                if isinstance(h3_event, HeadersReceived):
                    status = dict(h3_event.headers).get(b":status", b"")
                    if exchange.headers:
                        exchange.trailers = list(h3_event.headers)
                    elif status.startswith(b"1"):
                        exchange.interim.append(list(h3_event.headers))
                    else:
                        exchange.headers = list(h3_event.headers)
                elif isinstance(h3_event, DataReceived):
                    exchange.body += h3_event.data
                if getattr(h3_event, "stream_ended", False):
                    exchange.ended = True
                    if not exchange.done.called:
                        exchange.done.callback(exchange)

    def transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(now=self.clock()):
            self.send(data, addr)


class FakeUDPTransport:
    """What an ``HTTP3Listener`` writes, kept; its address."""

    def __init__(self, host: str = "127.0.0.1", port: int = 443) -> None:
        from twisted.internet.address import IPv4Address

        self.written: list[tuple[bytes, Any]] = []
        self.address = IPv4Address("UDP", host, port)

    def write(self, data: bytes, addr: Any) -> None:
        self.written.append((data, addr))

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        return self.address


def pump(client: H3Client, listener: Any, transport: FakeUDPTransport, clock: Any, client_addr: Any,
         outbox: list[tuple[bytes, Any]], rounds: int = 10_000) -> None:
    """Carry datagrams both ways until neither side has more, moving ``clock`` for delayed ACKs."""
    quiet = 0
    for _ in range(rounds):
        moved = False
        while outbox:
            data, _addr = outbox.pop(0)
            listener.datagramReceived(data, client_addr)
            moved = True
        while transport.written:
            data, _addr = transport.written.pop(0)
            client.receive(data, ("127.0.0.1", 443))
            moved = True
        if moved:
            quiet = 0
            continue
        quiet += 1
        if quiet > 3:
            return
        clock.advance(0.03)
        client.tick()
        client.transmit()  # what pacing held back


class UDPClientProtocol(DatagramProtocol):
    """Carries an ``H3Client``'s datagrams over a real UDP socket, with reactor timers."""

    def __init__(self, reactor: Any, server_name: str, cafile: str | None) -> None:
        self.reactor = reactor
        self.client = H3Client(reactor.seconds, self._send, server_name, cafile)
        self._timer: Any = None
        self.stopped = False

    def _send(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.write(data, addr)
        self._schedule()

    def _schedule(self) -> None:
        if self.stopped:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        deadline = self.client.quic.get_timer()
        if deadline is not None:
            self._timer = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.client.tick()
        self._schedule()

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 - Twisted's name
        self.client.receive(data, addr)
        self._schedule()

    def stop(self) -> None:
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
