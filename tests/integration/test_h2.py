"""HTTP/2 end to end with curl: h2c by prior knowledge, and h2 over TLS chosen by ALPN."""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue

from tests.integration.test_https import HTTPSTestCase, free_port
from txcaddy._reactor import default_reactor

CURL = shutil.which("curl")


def curl(*args: str) -> Any:
    """Run curl; its output ends with the HTTP version it used (``-w``)."""
    assert CURL is not None
    return getProcessOutputAndValue(CURL, ["-s", "-S", "-w", "\n%{http_version}", *args],
                                    env=dict(os.environ), reactor=default_reactor())


class HTTP2Tests(HTTPSTestCase):
    skip = None if CURL else "curl is not installed"

    @inlineCallbacks
    def test_h2c_prior_knowledge(self) -> Any:
        """With ``protocols h1 h2 h2c``, curl's prior-knowledge HTTP/2 is served; HTTP/1.1 still is."""
        port = free_port()
        yield self.start(f"http://127.0.0.1:{port} {{\n\trespond \"{{http.request.proto}} {{http.request.uri}}\"\n}}\n",
                         extra="\tservers {\n\t\tprotocols h1 h2 h2c\n\t}\n")
        out, err, code = yield curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/a?b")
        self.assertEqual((code, out), (0, b"HTTP/2.0 /a?b\n2"), err)
        out, err, code = yield curl("--http1.1", f"http://127.0.0.1:{port}/c")
        self.assertEqual((code, out), (0, b"HTTP/1.1 /c\n1.1"), err)

    @inlineCallbacks
    def test_h2c_off_by_default(self) -> Any:
        """Without h2c in ``protocols`` a prior-knowledge client gets no HTTP/2."""
        port = free_port()
        yield self.start(f"http://127.0.0.1:{port} {{\n\trespond hi\n}}\n")
        out, err, code = yield curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/")
        self.assertNotEqual(code, 0)

    @inlineCallbacks
    def test_h2_over_tls_with_alpn(self) -> Any:
        """A TLS ``localhost`` site speaks HTTP/2 to curl --http2 (ALPN h2): a GET, a 300 kB POST
        whose body reaches an HTTP/1.1 upstream whole, and HEAD; --http1.1 still gets HTTP/1.1."""
        import hashlib
        import json

        from tests.reverseproxy._backends import EchoBackend

        backend = EchoBackend("b1")
        self.addCleanup(backend.stop)
        yield self.start(f"localhost {{\n\thandle /echo {{\n\t\treverse_proxy {backend.address}\n\t}}\n"
                         "\trespond \"{http.request.proto} {http.request.scheme}\"\n}\n")
        root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        url = f"https://localhost:{self.https_port}/"
        resolve = f"localhost:{self.https_port}:127.0.0.1"
        out, err, code = yield curl("--http2", "--cacert", root, "--resolve", resolve, url)
        self.assertEqual((code, out), (0, b"HTTP/2.0 https\n2"), err)
        upload = self.mktemp()
        body = bytes(range(256)) * 1200  # 300 kB: several frames, within the 1 MiB windows
        with open(upload, "wb") as f:
            f.write(body)
        # The body goes to a route that reads it: a route answering without reading it may see
        # curl report the stream reset that follows the response (error 92, as with Caddy).
        out, err, code = yield curl("--http2", "--cacert", root, "--resolve", resolve,
                                    "--data-binary", f"@{upload}", url + "echo")
        self.assertEqual(code, 0, err)
        seen = json.loads(out.rsplit(b"\n", 1)[0])
        self.assertEqual((seen["method"], seen["body_sha256"]), ("POST", hashlib.sha256(body).hexdigest()))
        self.assertTrue(out.endswith(b"\n2"))
        out, err, code = yield curl("--http2", "--cacert", root, "--resolve", resolve, "-I", url)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(b"HTTP/2 200"), out)
        self.assertIn(b"content-length: 14", out)
        self.assertTrue(out.endswith(b"\n2"))
        out, err, code = yield curl("--http1.1", "--cacert", root, "--resolve", resolve, url)
        self.assertEqual((code, out), (0, b"HTTP/1.1 https\n1.1"), err)

    @inlineCallbacks
    def test_tls_speaks_h2_by_default(self) -> Any:
        """Without a ``protocols`` option a TLS site offers h2 (Caddy's default h1 h2 h3);
        ``protocols h1`` keeps it to HTTP/1.1."""
        yield self.start("localhost {\n\trespond \"{http.request.proto}\"\n}\n")
        root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        resolve = f"localhost:{self.https_port}:127.0.0.1"
        out, err, code = yield curl("--http2", "--cacert", root, "--resolve", resolve, f"https://localhost:{self.https_port}/")
        self.assertEqual((code, out), (0, b"HTTP/2.0\n2"), err)

    @inlineCallbacks
    def test_protocols_h1_keeps_tls_to_http11(self) -> Any:
        """``protocols h1`` offers only http/1.1 by ALPN: curl --http2 gets HTTP/1.1."""
        yield self.start("localhost {\n\trespond \"{http.request.proto}\"\n}\n",
                         extra="\tservers {\n\t\tprotocols h1\n\t}\n")
        root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        resolve = f"localhost:{self.https_port}:127.0.0.1"
        out, err, code = yield curl("--http2", "--cacert", root, "--resolve", resolve, f"https://localhost:{self.https_port}/")
        self.assertEqual((code, out), (0, b"HTTP/1.1\n1.1"), err)

    def test_unread_upload_larger_than_the_windows_ends(self) -> Any:
        """A 5 MB POST to a route that never reads it ends as with Caddy (the response, then the
        stream reset: curl's error 92) instead of leaving curl uploading until it gives up."""
        return self.unread_upload(fast_io=True)

    def test_unread_upload_without_the_fast_path(self) -> Any:
        """The same without the fast path (embedded use): the response's end and the reset are
        still one write."""
        return self.unread_upload(fast_io=False)

    @inlineCallbacks
    def unread_upload(self, fast_io: bool) -> Any:
        yield self.start("localhost {\n\trespond ok\n}\n", fast_io=fast_io)
        root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        resolve = f"localhost:{self.https_port}:127.0.0.1"
        upload = self.mktemp()
        with open(upload, "wb") as f:
            f.write(b"x" * 5_000_000)
        out, err, code = yield curl("--http2", "--max-time", "30", "--cacert", root, "--resolve", resolve,
                                    "--data-binary", f"@{upload}", f"https://localhost:{self.https_port}/")
        self.assertEqual(code, 92, err)  # 28 would be curl's timeout: the upload never ended
        self.assertIn(b"Stream error", err)


class TranslationTests(HTTPSTestCase):
    """HTTP/2 in front, HTTP/1.1 behind (and the other way for upgrades), as RFC 9113 and Caddy."""

    skip = None if CURL else "curl is not installed"

    @inlineCallbacks
    def test_http2_client_to_http11_upstream(self) -> Any:
        """An HTTP/2 request reaches an HTTP/1.1 upstream with its method, path, query, body and
        fields; Host comes from :authority."""
        import hashlib
        import json

        from tests.reverseproxy._backends import EchoBackend

        backend = EchoBackend("b1")
        self.addCleanup(backend.stop)
        port = free_port()
        yield self.start(f"http://127.0.0.1:{port} {{\n\treverse_proxy {backend.address}\n}}\n",
                         extra="\tservers {\n\t\tprotocols h1 h2 h2c\n\t}\n")
        body = b"payload " * 5000
        upload = self.mktemp()
        with open(upload, "wb") as f:
            f.write(body)
        out, err, code = yield curl("--http2-prior-knowledge", "-X", "PUT", "-H", "X-Custom: yes",
                                    "--data-binary", f"@{upload}", f"http://127.0.0.1:{port}/p/q?x=1&y=%20")
        self.assertEqual(code, 0, err)
        seen = json.loads(out.rsplit(b"\n", 1)[0])
        headers = {k.lower(): v for k, v in seen["headers"]}
        self.assertEqual((seen["method"], seen["uri"]), ("PUT", "/p/q?x=1&y=%20"))
        self.assertEqual(headers["host"], f"127.0.0.1:{port}")
        self.assertEqual(headers["x-custom"], "yes")
        self.assertEqual(seen["body_sha256"], hashlib.sha256(body).hexdigest())
        self.assertEqual(out.rsplit(b"\n", 1)[1], b"2")
