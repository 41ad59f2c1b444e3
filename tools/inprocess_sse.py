"""In-process cost of relaying one server-sent event: no sockets, no real poll.

One client request is proxied to an upstream that answers ``text/event-stream`` with no
Content-Length (``Connection: close``, read until EOF, as ``bench/sse_source.py`` answers;
``--chunked``: chunked on a kept-alive connection, as the nginx in front of it answers the
proxy in ``bench/``). Then each event is handed to the upstream connection in a
``dataReceived`` of its own, followed by what the reactor does before it polls again:
that is the whole per-event path of the ``sse`` scenario (the upstream parser, the
response relay, the client response's chunked write, the send). ``--streams 64`` opens
as many streams as ``bench/`` does and sends the events round them.

The sends take txcaddy's fast path, as under ``twistd caddy`` and ``txcaddy run``: both
connections are stand-ins for plain TCP connections whose ``send`` takes everything, so
``send_now`` batches each write and the reactor's ``doIteration`` (the fast path's
wrapper around a poll that finds nothing) sends the batch. ``--plain`` leaves the fast
path off: the writes then reach ``StringTransport.write`` directly.

Prints the best of ``--rounds`` runs of ``--events`` events in microseconds of this
process's CPU time per event (other load on the machine then counts less).

    python3 tools/inprocess_sse.py [--events 20000] [--rounds 5] [--chunked] [--streams 1]
                                   [--plain] [--calls [--profile N]]

``--calls`` counts the Python function calls per event instead (with ``cProfile``): a
number that does not depend on the machine's load, to check that a change leaves the
per-event path as it was; ``--profile N`` also lists the N functions called most. Four
of the calls are the tool's own (the poll, the socket's ``send`` and ``len``, emptying
what was sent). The tool runs against the tree it is started from (its path first on
``sys.path``), so two trees compare by running it from each, in one session on one
machine: it works on trees from before ``install_fast_io`` too.

What it showed when the ``sse`` scenario's CPU per event rose after the code-health
refactor (9196a48 -> 87cef65): the per-event path was the same (30 -> 29 calls, 38 -> 37
chunked; equal CPU here, and ~40,000 instructions per event before and after under
cachegrind), while ``bench/`` charges some 60 us of CPU per event against the ~3.5 us
measured here: the rest is the wake-up, the system calls and cold caches between events
50 ms apart, which no change to this path explains.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any, cast

sys.path.insert(0, ".")

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.defer import succeed  # noqa: E402
from twisted.internet.testing import MemoryReactorClock, StringTransport  # noqa: E402

from txcaddy import _twisted  # noqa: E402
from txcaddy.http._h1 import HTTP11Protocol  # noqa: E402
from txcaddy.reverseproxy.handler import ReverseProxyHandler  # noqa: E402
from txcaddy.service import fromCaddyfile  # noqa: E402

_REQUEST = (b"GET /sse HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n"
            b"Accept: text/event-stream\r\n\r\n")
_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
         b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n")
_CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/event-stream\r\n"
                 b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
                 b"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\r\n")
_EVENT = b"data: 1754300000123456789\n\n"  # what sse_source.py sends: a monotonic_ns stamp
_CHUNKED_EVENT = b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT)


class _Socket:
    """A socket whose ``send`` takes everything; what was sent is kept until cleared."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def sendmsg(self, chunks: list[bytes]) -> int:
        self.sent.extend(chunks)
        return sum(map(len, chunks))


class _TCPStandIn(StringTransport):
    """A ``StringTransport`` with the attributes the fast path reads on a plain TCP connection.

    Registered as a direct transport in ``_twisted`` (see ``_use_fast_path``), so its writes
    are batched and sent through ``socket.send`` as a ``tcp.Server``'s would be.
    """

    TLS = False
    _tempDataLen = 0
    dataBuffer = b""
    _writeDisconnected = False
    _aborting = False
    protocol: Any = None  # the protocol this connection delivers to (set before makeConnection)

    def __init__(self, reactor: Any, peer: IPv4Address) -> None:
        self.socket = _Socket()
        super().__init__(peerAddress=peer)
        self.reactor = reactor

    def output(self) -> bytes:
        """Everything written so far, through the batch or through Twisted's ``write``."""
        return b"".join(self.socket.sent) + self.value()

    def clear(self) -> None:
        super().clear()
        self.socket.sent.clear()


class _Upstream:
    """An endpoint whose connections are answered by hand."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pending: list[tuple[Any, _TCPStandIn]] = []

    def connect(self, factory: Any) -> Any:
        address = IPv4Address("TCP", "127.0.0.1", 9000)
        protocol = factory.buildProtocol(address)
        transport = _TCPStandIn(self.reactor, address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.pending.append((protocol, transport))
        return succeed(protocol)


class _Reactor(MemoryReactorClock):
    """A memory reactor with a ``doIteration`` (a poll finding nothing) for the fast path to wrap."""

    def doIteration(self, timeout: float | None) -> None:
        pass


#: Every reactor made, kept alive: trees from before ``install_fast_io`` remember the reactors
#: they wrapped by ``id()``, which a later reactor could otherwise reuse.
_REACTORS: list[_Reactor] = []


def _use_fast_path(reactor: _Reactor) -> None:
    """Batch the stand-in transports' sends and send the batch in ``reactor.doIteration``.

    Trees from before ``install_fast_io`` batched every direct transport and wrapped the
    reactor on its first batched send; later ones wrap it when asked. Either way it stays
    on for the rest of the process (``main`` does not mix ``--plain`` runs with others).
    """
    _REACTORS.append(reactor)
    _twisted._DIRECT = _twisted._DIRECT | {_TCPStandIn}
    install = getattr(_twisted, "install_fast_io", None)
    if install is not None:
        install(reactor)


def _handler(routes: Any) -> ReverseProxyHandler:
    for route in routes.routes:
        for handler in route.handlers:
            if isinstance(handler, ReverseProxyHandler):
                return handler
    raise SystemExit("no reverse_proxy handler")


def _open_stream(server: Any, reactor: Any, upstream: _Upstream, index: int, chunked: bool,
                 ) -> tuple[Any, _TCPStandIn]:
    """One client connection whose proxied SSE response has started: (upstream protocol, client)."""
    protocol = HTTP11Protocol(server, reactor)
    transport = _TCPStandIn(reactor, IPv4Address("TCP", "127.0.0.1", 50000 + index))
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(_REQUEST)
    reactor.doIteration(0)
    if not upstream.pending:
        raise SystemExit("the proxy dialled no upstream")
    upstream_protocol, upstream_transport = upstream.pending.pop()
    if not upstream_transport.output().startswith(b"GET /sse HTTP/1.1\r\n"):
        raise SystemExit(f"no request upstream: {upstream_transport.output()[:200]!r}")
    event = _CHUNKED_EVENT if chunked else _EVENT
    upstream_protocol.dataReceived((_CHUNKED_HEAD if chunked else _HEAD) + event)
    reactor.doIteration(0)
    sent = transport.output()
    if not (sent.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in sent
            and sent.endswith(_CHUNKED_EVENT)):
        raise SystemExit(f"the proxy did not relay the first event: {sent[:300]!r}")
    transport.clear()
    upstream_protocol.dataReceived(event)
    reactor.doIteration(0)
    if transport.output() != _CHUNKED_EVENT:
        raise SystemExit(f"the proxy did not relay an event as one chunk: {transport.output()!r}")
    transport.clear()
    return upstream_protocol, transport


def run(events: int, chunked: bool = False, plain: bool = False, streams: int = 1,
        calls: bool = False, top: int = 0) -> float:
    """CPU microseconds (or, with ``calls``, Python function calls) per relayed event."""
    reactor = _Reactor()
    if not plain:
        _use_fast_path(reactor)
    service = fromCaddyfile(  # cast: older trees have no reactor type to name
        "http://:18081 {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:9000\n}\n",
        reactor=cast(Any, reactor))
    assert service.http is not None
    server = next(iter(service.http.servers.values()))
    upstream = _Upstream(reactor)
    _handler(server.routes).transport.pool.endpoint_factory = lambda address: upstream
    # What each event takes: the upstream read, then emptying what reached the client
    # (the batch's socket, or Twisted's buffer without the fast path).
    paths = []
    for index in range(streams):
        upstream_protocol, transport = _open_stream(server, reactor, upstream, index, chunked)
        paths.append((upstream_protocol.dataReceived,
                      transport.clear if plain else transport.socket.sent.clear))
    schedule = [paths[i % streams] for i in range(events)]  # round robin, as 64 streams interleave
    event = _CHUNKED_EVENT if chunked else _EVENT
    iterate = reactor.doIteration

    def relay() -> None:
        for deliver, drain in schedule:
            deliver(event)
            iterate(0)  # the reactor's next turn: the fast path sends the batch, then polls
            drain()

    gc.collect()
    if calls:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        relay()
        profile.disable()
        stats = pstats.Stats(profile)
        if top:
            stats.sort_stats("ncalls").print_stats(top)
        return stats.total_calls / events  # type: ignore[attr-defined]
    start = time.process_time()
    relay()
    return (time.process_time() - start) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunked", action="store_true", help="a chunked upstream response")
    parser.add_argument("--plain", action="store_true", help="without txcaddy's fast path")
    parser.add_argument("--streams", type=int, default=1,
                        help="concurrent streams, the events going round them (bench/: 64)")
    parser.add_argument("--calls", action="store_true", help="function calls per event")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="with --calls: list the N functions called most")
    args = parser.parse_args()
    if args.calls:
        per_event = run(args.events, args.chunked, args.plain, args.streams, calls=True,
                        top=args.profile)
        print(f"{per_event:.2f} function calls/event")
        return
    results = [run(args.events, args.chunked, args.plain, args.streams) for _ in range(args.rounds)]
    print(f"best {min(results):.2f} us/event  (rounds: {', '.join(f'{r:.2f}' for r in results)})")


if __name__ == "__main__":
    main()
