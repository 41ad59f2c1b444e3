"""In-process cost of a proxied small request: no sockets, no reactor loop.

A client ``HTTP11Protocol`` and the upstream connections sit on ``StringTransport``s driven by
hand, so the time measured is txcaddy's Python work per request (server protocol, routing, proxy
loop, upstream client, pool), not the kernel's.  Prints the best of ``--rounds`` runs of
``--requests`` keep-alive requests in microseconds of this process's CPU time per request
(other load on the machine then counts less, though it still slows the caches).

    python3 tools/inprocess_bench.py [--requests 20000] [--rounds 5] [--close] [--calls] [--metrics]

``--metrics`` measures the same server with ``servers { metrics }`` (the HTTP series counted).

``--calls`` counts the Python function calls per request instead (with ``cProfile``): a
number that does not depend on the machine's load, to check that a change leaves the
per-request call path as it was.

``--close`` makes every client request ask for ``Connection: close`` to the upstream too (a
new upstream connection per request: the dial and pool paths).  Compare two trees only in the
same session on the same machine; run it from the tree being measured.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

sys.path.insert(0, ".")

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.defer import succeed  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from txcaddy.http._h1 import HTTP11Protocol  # noqa: E402
from txcaddy.reverseproxy.handler import ReverseProxyHandler  # noqa: E402
from txcaddy.service import fromCaddyfile  # noqa: E402
from txcaddy.testing import MemoryServingReactor  # noqa: E402

_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: test\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello")
_CLOSE_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: test\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
_REQUEST = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class _Upstream:
    """An endpoint whose connections are StringTransports answered by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, StringTransport]] = []

    def connect(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 9000))
        protocol.makeConnection(transport)
        self.pending.append((protocol, transport))
        return succeed(protocol)


def _handler(routes: Any) -> ReverseProxyHandler:
    for route in routes.routes:
        for handler in route.handlers:
            handler = getattr(handler, "handler", handler)  # under ``metrics``: the wrapped one
            if isinstance(handler, ReverseProxyHandler):
                return handler
    raise SystemExit("no reverse_proxy handler")


def run(requests: int, close: bool, calls: bool = False, metrics: bool = False) -> float:
    reactor = MemoryServingReactor()
    options = "{\n\tservers {\n\t\tmetrics\n\t}\n}\n" if metrics else ""
    service = fromCaddyfile(
        options + "http://:18081 {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:9000\n}\n", reactor=reactor)
    assert service.http is not None
    server = next(iter(service.http.servers.values()))
    upstream = _Upstream()
    _handler(server.routes).transport.pool.endpoint_factory = lambda address: upstream
    protocol = HTTP11Protocol(server, reactor)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)
    answer = _CLOSE_RESPONSE if close else _RESPONSE
    connections: list[tuple[Any, StringTransport]] = []

    def one() -> None:
        protocol.dataReceived(_REQUEST)
        if upstream.pending:
            connections.extend(upstream.pending)
            upstream.pending.clear()
        upstream_protocol, upstream_transport = connections[-1]
        upstream_transport.clear()
        upstream_protocol.dataReceived(answer)
        if close:
            upstream_protocol.connectionLost(None)
            connections.pop()
        transport.clear()

    protocol.dataReceived(_REQUEST)  # the first upstream connection is made
    connections.extend(upstream.pending)
    upstream.pending.clear()
    connections[-1][0].dataReceived(answer)
    if not transport.value().endswith(b"hello"):
        raise SystemExit(f"the proxy did not answer: {transport.value()[:200]!r}")
    if close:
        connections[-1][0].connectionLost(None)
        connections.pop()
    transport.clear()
    gc.collect()
    if calls:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            one()
        profile.disable()
        return pstats.Stats(profile).total_calls / requests  # type: ignore[attr-defined]
    start = time.process_time()
    for _ in range(requests):
        one()
    return (time.process_time() - start) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--close", action="store_true")
    parser.add_argument("--calls", action="store_true")
    parser.add_argument("--metrics", action="store_true", help="the server with the ``metrics`` option")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the requests")
    args = parser.parse_args()
    if args.calls:
        print(f"{run(args.requests, args.close, calls=True, metrics=args.metrics):.2f} function calls/request")
        return
    if args.profile:
        import cProfile

        cProfile.runctx("run(args.requests, args.close, metrics=args.metrics)", globals(), locals(),
                        sort="tottime")
        return
    results = [run(args.requests, args.close, metrics=args.metrics) for _ in range(args.rounds)]
    print(f"best {min(results):.1f} us/request  (rounds: {', '.join(f'{r:.1f}' for r in results)})")


if __name__ == "__main__":
    main()
