"""HTTPS end to end: automatic HTTPS with the local CA, redirects, files, the proxy over TLS.

Real listeners on 127.0.0.1 with ``http_port``/``https_port`` set to free ports and the
storage in a temporary directory; real TLS clients that trust only the CA the server made.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from typing import Any

import treq
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from twisted.web import resource, server
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from tests._net import connect, listen_local, port_number
from tests.integration.test_websocket import RawClient, WebSocketTestCase
from tests.reverseproxy._backends import EchoBackend
from tests.tls._certs import TestCA
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.service import CaddyService
from txcaddy.tls import truststore
from txcaddy.tls.internalca import PKIService


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HTTPSTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.storage = os.path.abspath(self.mktemp())
        self.http_port, self.https_port = free_port(), free_port()

    def globals(self, extra: str = "", skip_install_trust: bool = True) -> str:
        # skip_install_trust: a test must never put its CA into this machine's trust stores.
        skip = "\tskip_install_trust\n" if skip_install_trust else ""
        return (
            f"{{\n\thttp_port {self.http_port}\n\thttps_port {self.https_port}\n\tadmin off\n{skip}"
            f"\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n{extra}}}\n"
        )

    @inlineCallbacks
    def start(self, sites: str, extra: str = "", skip_install_trust: bool = True, fast_io: bool = False) -> Any:
        service: CaddyService = fromCaddyfile(self.globals(extra, skip_install_trust) + sites, reactor=default_reactor(),
                                              fast_io=fast_io)
        service.startService()
        self.addCleanup(service.stopService)
        if service.tls is not None and service.tls.manager is not None:
            yield service.tls.manager.ready
        return service

    def root(self) -> Certificate:
        with open(os.path.join(self.storage, "pki", "authorities", "local", "root.crt"), "rb") as f:
            return Certificate.loadPEM(f.read())

    def agent(self, trust: Certificate) -> Agent:
        pool = HTTPConnectionPool(default_reactor(), persistent=False)
        return Agent(default_reactor(), contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)

    @inlineCallbacks
    def get(self, url: str, trust: Certificate | None = None, **kwargs: Any) -> Any:
        if trust is not None:
            kwargs["agent"] = self.agent(trust)
        response = yield treq.get(url, persistent=False, allow_redirects=False, **kwargs)
        body = yield response.content()
        return response, body


def plain_exchange(port: int, request: bytes) -> Deferred[bytes]:
    """Send raw bytes over one plain connection and collect the reply until it closes."""
    done: Deferred[bytes] = Deferred()
    factory = ClientFactory.forProtocol(lambda: RawClient(request, done))
    factory.noisy = False
    connect("127.0.0.1", port, factory)
    return done


def tls_exchange(port: int, server_name: str, trust: Certificate, request: bytes) -> Deferred[bytes]:
    """Send raw bytes over one TLS connection and collect all that comes back until it closes."""
    done: Deferred[bytes] = Deferred()
    factory = ClientFactory.forProtocol(lambda: RawClient(request, done))
    factory.noisy = False
    options = optionsForClientTLS(server_name, trustRoot=trust)
    connect("127.0.0.1", port, TLSMemoryBIOFactory(options, True, factory))
    return done


class LocalCATests(HTTPSTestCase):
    @inlineCallbacks
    def test_localhost_served_with_internal_certificate(self) -> Any:
        """``localhost`` gets a certificate from the local CA, stored in Caddy's layout, served over TLS 1.3."""
        yield self.start("localhost {\n\trespond \"{http.request.scheme} {http.request.tls.version} "
                         "{http.request.tls.server_name}\"\n}\n")
        response, body = yield self.get(f"https://localhost:{self.https_port}/", self.root())
        self.assertEqual((response.code, body), (200, b"https tls1.3 localhost"))
        site = os.path.join(self.storage, "certificates", "local", "localhost")
        self.assertEqual(sorted(os.listdir(site)), ["localhost.crt", "localhost.json", "localhost.key"])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(site, "localhost.key")).st_mode), 0o600)

    @inlineCallbacks
    def test_http_port_redirects_with_308(self) -> Any:
        """The HTTP port answers 308 to ``https://host`` (no port: it is ``https_port``), connection closed."""
        yield self.start("localhost {\n\trespond hi\n}\n")
        response, body = yield self.get(f"http://127.0.0.1:{self.http_port}/a/b?x=1&y=%20",
                                        headers={"Host": f"localhost:{self.http_port}"})
        self.assertEqual(response.code, 308)
        self.assertEqual(response.headers.getRawHeaders("location"), ["https://localhost/a/b?x=1&y=%20"])
        self.assertEqual(body, b"")
        raw = yield plain_exchange(self.http_port, b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertEqual(head[0], b"HTTP/1.1 308 Permanent Redirect")
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"Content-Length: 0", head)
        # unknown hosts are redirected too (the catch-all route)
        response, _ = yield self.get(f"http://127.0.0.1:{self.http_port}/", headers={"Host": "elsewhere.test"})
        self.assertEqual((response.code, response.headers.getRawHeaders("location")),
                         (308, ["https://elsewhere.test/"]))

    @inlineCallbacks
    def test_redirect_keeps_other_https_ports(self) -> Any:
        """A site on a port other than ``https_port`` is redirected to that port."""
        other = free_port()
        yield self.start(f"a.localhost:{other} {{\n\trespond a\n}}\n")
        response, _ = yield self.get(f"http://127.0.0.1:{self.http_port}/p", headers={"Host": "a.localhost"})
        self.assertEqual(response.headers.getRawHeaders("location"), [f"https://a.localhost:{other}/p"])
        reply = yield tls_exchange(other, "a.localhost", self.root(),
                                   b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n")
        self.assertTrue(reply.endswith(b"\r\n\r\na"), reply)

    @inlineCallbacks
    def test_second_start_reuses_stored_certificates(self) -> Any:
        """A restart loads the CA and the certificate from storage instead of making new ones."""
        service = yield self.start("localhost {\n\trespond hi\n}\n")
        site = os.path.join(self.storage, "certificates", "local", "localhost", "localhost.crt")
        with open(site, "rb") as f:
            first = f.read()
        yield service.stopService()
        yield self.start("localhost {\n\trespond hi\n}\n")
        with open(site, "rb") as f:
            self.assertEqual(f.read(), first)

    @inlineCallbacks
    def test_unknown_name_fails_only_its_handshake(self) -> Any:
        """A handshake for a name without a certificate fails; the next connection is served."""
        yield self.start("localhost {\n\trespond hi\n}\n")
        failed = yield tls_exchange(self.https_port, "other.test", self.root(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(failed, b"")
        response, body = yield self.get(f"https://localhost:{self.https_port}/", self.root())
        self.assertEqual(body, b"hi")


class TrustInstallTests(HTTPSTestCase):
    """The PKI app's trust installation at start, with ``truststore.install`` replaced by a
    recorder (and no system store to fall back on), so this machine's stores are never touched."""

    def setUp(self) -> None:
        super().setUp()
        self.calls: list[tuple[bytes, threading.Thread]] = []
        self.patch(truststore, "install", self.install)
        self.patch(truststore, "SYSTEM_TRUST_CANDIDATES", [])

    def install(self, certificate: x509.Certificate) -> list[str]:
        self.calls.append((certificate.public_bytes(Encoding.PEM), threading.current_thread()))
        return ["recorded"]

    @inlineCallbacks
    def test_root_installed_at_start_in_a_thread(self) -> Any:
        """Without ``skip_install_trust`` the local CA's root is installed at start, in a thread."""
        service = yield self.start("localhost {\n\trespond hi\n}\n", skip_install_trust=False)
        (pki,) = [child for child in service if isinstance(child, PKIService)]
        trusted = yield pki.trusted
        self.assertEqual(trusted, {"local": ["recorded"]})
        with open(os.path.join(self.storage, "pki", "authorities", "local", "root.crt"), "rb") as f:
            self.assertEqual(self.calls[0][0], f.read())
        self.assertIsNot(self.calls[0][1], threading.main_thread())
        self.assertEqual(len(self.calls), 1)

    @inlineCallbacks
    def test_skip_install_trust(self) -> Any:
        """With ``skip_install_trust`` nothing is installed (and the site is still served)."""
        service = yield self.start("localhost {\n\trespond hi\n}\n")
        (pki,) = [child for child in service if isinstance(child, PKIService)]
        trusted = yield pki.trusted
        self.assertEqual((trusted, self.calls), ({}, []))
        _, body = yield self.get(f"https://localhost:{self.https_port}/", self.root())
        self.assertEqual(body, b"hi")


class PKIUseTests(HTTPSTestCase):
    def test_no_local_ca_for_public_names_only(self) -> None:
        """Only public names (ACME): no PKI app, so no local CA is made or trusted (Caddy's rule);
        a local name brings it in."""
        from txcaddy.tls.internalca import PKIService

        def pki_services(sites: str) -> list[Any]:
            config = (f"{{\n\thttp_port {self.http_port}\n\thttps_port {self.https_port}\n\tadmin off\n"
                      f"\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n}}\n") + sites
            service = fromCaddyfile(config, reactor=default_reactor())
            return [child for child in service if isinstance(child, PKIService)]

        self.assertEqual(pki_services("example.test {\n\trespond hi\n}\n"), [])
        self.assertEqual(len(pki_services("localhost {\n\trespond hi\n}\n")), 1)


class FileCertificateTests(HTTPSTestCase):
    @inlineCallbacks
    def test_tls_directive_with_files_and_sni(self) -> Any:
        """``tls cert key`` per site: SNI picks each site's certificate; nothing is managed."""
        ca = TestCA()
        paths = {}
        for name in ("a.test", "b.test"):
            cert_pem, key_pem = ca.leaf([name])
            paths[name] = (self.mktemp(), self.mktemp())
            for path, data in zip(paths[name], (cert_pem, key_pem), strict=True):
                with open(path, "wb") as f:
                    f.write(data)
        sites = "".join(
            f"{name}:{self.https_port} {{\n\ttls {paths[name][0]} {paths[name][1]}\n\trespond {name}\n}}\n"
            for name in ("a.test", "b.test"))
        service = yield self.start(sites)
        self.assertEqual(service.tls.managed, [])
        trust = Certificate.loadPEM(ca.pem)
        for name in ("a.test", "b.test"):
            reply = yield tls_exchange(self.https_port, name, trust,
                                       f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply)
            self.assertTrue(reply.endswith(name.encode()), reply)

    def test_missing_certificate_file_is_a_config_error(self) -> None:
        """A certificate file that does not exist fails the load, naming the file."""
        from txcaddy.errors import ConfigError

        missing = os.path.abspath(self.mktemp())
        error = self.assertRaises(ConfigError, fromCaddyfile,
                                  self.globals() + f"a.test {{\n\ttls {missing} {missing}.key\n}}\n",
                                  reactor=default_reactor())
        self.assertIn(missing, str(error))
        self.assertIn("no such file", str(error).lower())


class ProxyOverTLSTests(HTTPSTestCase):
    @inlineCallbacks
    def test_keep_alive_and_forwarded_proto(self) -> Any:
        """Two requests on one TLS connection reach the upstream with ``X-Forwarded-Proto: https``."""
        backend = EchoBackend("b1")
        self.addCleanup(backend.stop)
        yield self.start(f"localhost {{\n\treverse_proxy {backend.address}\n}}\n")
        request = (b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"
                   b"GET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = yield tls_exchange(self.https_port, "localhost", self.root(), request)
        self.assertEqual(reply.count(b"HTTP/1.1 200 OK"), 2, reply)
        self.assertEqual([r["uri"] for r in backend.requests], ["/one", "/two"])
        for seen in backend.requests:
            headers = {k.lower(): v for k, v in seen["headers"]}
            self.assertEqual(headers.get("x-forwarded-proto"), "https")


class WebSocketOverTLSTests(WebSocketTestCase, HTTPSTestCase):
    @inlineCallbacks
    def test_wss_through_the_proxy(self) -> Any:
        """A WebSocket over TLS through reverse_proxy: frames, ping, close code, all inside TLS."""
        upstream = self.upstream()
        yield self.start(f"localhost {{\n\treverse_proxy {upstream.address} {{\n"
                         "\t\theader_down X-Upstream yes\n\t}\n}\n")
        options = optionsForClientTLS("localhost", trustRoot=self.root())
        yield self.conversation(f"https://localhost:{self.https_port}", upstream, tls=options)


class _Ask(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's name
        domain = request.args[b"domain"][0].decode()
        self.asked.append(domain)
        if not domain.endswith(".allowed.localhost"):
            request.setResponseCode(403)
        return b""


class OnDemandServerTests(HTTPSTestCase):
    @inlineCallbacks
    def test_certificates_obtained_in_handshakes_when_ask_allows(self) -> Any:
        """Allowed names get a local-CA certificate in their first handshake; denied ones fail."""
        ask = _Ask()
        port = listen_local(server.Site(ask))
        self.addCleanup(port.stopListening)
        yield self.start(
            "https:// {\n\ttls internal {\n\t\ton_demand\n\t}\n\trespond \"hi {http.request.tls.server_name}\"\n}\n",
            extra=f"\ton_demand_tls {{\n\t\task http://127.0.0.1:{port_number(port)}/check?k=v\n\t}}\n")
        request = b"GET / HTTP/1.1\r\nHost: a.allowed.localhost\r\nConnection: close\r\n\r\n"
        # the local CA exists once the PKI app started: trust its root
        reply = yield tls_exchange(self.https_port, "a.allowed.localhost", self.root(), request)
        self.assertTrue(reply.endswith(b"hi a.allowed.localhost"), reply)
        stored = os.path.join(self.storage, "certificates", "local", "a.allowed.localhost")
        self.assertTrue(os.path.exists(os.path.join(stored, "a.allowed.localhost.crt")))
        reply = yield tls_exchange(self.https_port, "evil.localhost", self.root(),
                                   b"GET / HTTP/1.1\r\nHost: evil.localhost\r\n\r\n")
        self.assertEqual(reply, b"")
        # a second handshake for the allowed name is served from the cache: not asked again
        reply = yield tls_exchange(self.https_port, "a.allowed.localhost", self.root(), request)
        self.assertTrue(reply.endswith(b"hi a.allowed.localhost"), reply)
        self.assertEqual(ask.asked, ["a.allowed.localhost", "evil.localhost"])


class FastIOOverTLSTests(WebSocketTestCase, HTTPSTestCase):
    """The same over TLS with txcaddy's fast reactor path on (as ``txcaddy run`` has it): TLS
    records leave through the send batch (``_twisted.TLSServerProtocol``)."""

    @inlineCallbacks
    def test_pipelined_requests_large_file_and_close(self) -> Any:
        """Pipelined requests, a 3 MiB file (backpressure) and the close after it arrive whole."""
        import hashlib

        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        blob = os.urandom(3 * 1024 * 1024)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(blob)
        yield self.start(f"localhost {{\n\troot * {root}\n\tfile_server\n}}\n", fast_io=True)
        request = (b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n" * 3
                   + b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = yield tls_exchange(self.https_port, "localhost", self.root(), request)
        self.assertEqual(reply.count(b"HTTP/1.1 404 Not Found"), 3)
        body = reply.split(b"HTTP/1.1 200 OK", 1)[1].split(b"\r\n\r\n", 1)[1]
        self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(blob).hexdigest())

    @inlineCallbacks
    def test_wss_through_the_proxy(self) -> Any:
        """A WebSocket over TLS through reverse_proxy with the fast path on."""
        upstream = self.upstream()
        yield self.start(f"localhost {{\n\treverse_proxy {upstream.address} {{\n"
                         "\t\theader_down X-Upstream yes\n\t}\n}\n", fast_io=True)
        options = optionsForClientTLS("localhost", trustRoot=self.root())
        yield self.conversation(f"https://localhost:{self.https_port}", upstream, tls=options)
