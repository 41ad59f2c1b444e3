"""Random bytes on a connection never crash the protocol and never reach a handler as garbage."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler

PIECES = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n", b"Host: a\r\n",
        b"Content-Length: 3\r\n", b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n", b"Expect: 100-continue\r\n", b"Connection: close\r\n",
        b" folded\r\n", b"\r\n", b"\n", b"\r", b"abc", b"3\r\nabc\r\n", b"0\r\n\r\n", b"zz\r\n",
        b"\x00", b"GET http://h/p HTTP/1.1\r\n", b"X: " + b"y" * 500 + b"\r\n",
    ]
)
STREAMS = st.one_of(st.lists(PIECES, max_size=30).map(b"".join), st.binary(max_size=400))


@implementer(IHandler)
class Recorder:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def serve(self, request: Any, response: Any, next: Any) -> None:
        self.requests.append(request)
        request.body.discard()
        response.write(b"ok")


class RandomBytesTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(STREAMS, st.integers(min_value=1, max_value=64))
    def test_random_input(self, data: bytes, chunk: int) -> None:
        """Any byte stream, in any slicing, yields only HTTP/1.x output and well-formed requests."""
        clock = MemoryReactorClock()
        recorder = Recorder()
        server = HTTPServer("srv0", [":80"], RouteList([Route([recorder])]), reactor=clock, max_header_bytes=1024)
        protocol = HTTP11Factory(server, clock).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        for i in range(0, len(data), chunk):
            protocol.dataReceived(data[i : i + chunk])
        out = transport.value()
        if out:
            self.assertTrue(out.startswith(b"HTTP/1."), out[:60])
        for request in recorder.requests:
            self.assertTrue(request.method.isalpha())
            self.assertTrue(request.raw_path.startswith("/") or request.raw_path == "*")
        protocol.connectionLost(None)
