"""HTTP/3 end to end: a Caddyfile site with ``protocols h1 h2 h3``, aioquic's client over a real
UDP socket on 127.0.0.1, and the Alt-Svc advertisement on HTTP/1.1."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.http._h3client import UDPClientProtocol
from tests.integration.test_https import HTTPSTestCase
from tests.reverseproxy._backends import EchoBackend
from txcaddy._reactor import default_reactor

SITE = 'localhost {\n\trespond "{http.request.proto} {http.request.method}"\n}\n'
H3 = "\tservers {\n\t\tprotocols h1 h2 h3\n\t}\n"


class HTTP3Tests(HTTPSTestCase):
    @inlineCallbacks
    def exchange(self, method: bytes, body: bytes | None = None, path: bytes = b"/") -> Any:
        reactor = default_reactor()
        root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        protocol = UDPClientProtocol(reactor, "localhost", root)
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1", maxPacketSize=65535)
        self.addCleanup(port.stopListening)
        self.addCleanup(protocol.stop)
        client = protocol.client
        client.connect(("127.0.0.1", self.https_port))
        _, exchange = client.request(method, path, authority=f"localhost:{self.https_port}".encode(), body=body)
        yield exchange.done
        client.quic.close()
        client.transmit()
        return exchange

    @inlineCallbacks
    def test_get_and_post_over_h3(self) -> Any:
        """A GET is served over HTTP/3 (proto HTTP/3.0) with the local CA's certificate for
        ``localhost`` (verified by the client); a POST's body streams through reverse_proxy."""
        backend = EchoBackend("b1")
        self.addCleanup(backend.stop)
        site = (f'localhost {{\n\thandle /echo {{\n\t\treverse_proxy {backend.address}\n\t}}\n'
                '\trespond "{http.request.proto} {http.request.method}"\n}\n')
        yield self.start(site, extra=H3)
        got = yield self.exchange(b"GET")
        self.assertEqual((got.status, got.body), (200, b"HTTP/3.0 GET"))
        self.assertEqual(got.header(b"server"), b"Caddy")
        self.assertIsNone(got.header(b"alt-svc"))  # only responses below HTTP/3 advertise it
        body = b"payload " * 40_000  # 320 kB: many QUIC packets
        posted = yield self.exchange(b"POST", body, b"/echo")
        self.assertEqual(posted.status, 200)
        seen = json.loads(posted.body)
        self.assertEqual((seen["method"], seen["uri"]), ("POST", "/echo"))
        self.assertEqual(seen["body_sha256"], hashlib.sha256(body).hexdigest())

    @inlineCallbacks
    def test_alt_svc_on_http11_when_h3_on(self) -> Any:
        """HTTPS HTTP/1.1 responses of a server with h3 carry ``Alt-Svc: h3=":PORT"; ma=2592000``."""
        service = yield self.start(SITE, extra=H3)
        response, body = yield self.get(f"https://localhost:{self.https_port}/", trust=self.root())
        self.assertEqual(body, b"HTTP/1.1 GET")
        self.assertEqual(response.headers.getRawHeaders("alt-svc"), [f'h3=":{self.https_port}"; ma=2592000'])
        udp = [child for child in service if getattr(child, "listener", None) is not None]
        self.assertEqual([child.bound_port() for child in udp], [self.https_port])

    @inlineCallbacks
    def test_no_alt_svc_without_h3(self) -> Any:
        """Without h3 in ``protocols`` there is no Alt-Svc and no UDP listener."""
        service = yield self.start(SITE, extra="\tservers {\n\t\tprotocols h1 h2\n\t}\n")
        response, body = yield self.get(f"https://localhost:{self.https_port}/", trust=self.root())
        self.assertEqual(body, b"HTTP/1.1 GET")
        self.assertIsNone(response.headers.getRawHeaders("alt-svc"))
        self.assertEqual([child for child in service if getattr(child, "listener", None) is not None], [])
