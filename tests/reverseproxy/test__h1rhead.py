"""txcaddy.reverseproxy._h1rhead: an upstream response head from its bytes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.reverseproxy._h1rhead import parse_head
from txcaddy.reverseproxy.errors import UpstreamProtocolError


class ParseHeadTests(SynchronousTestCase):
    def test_crlf_head(self) -> None:
        """Status line, fields in order (values stripped) and the framing fields come back."""
        head, length, te, close = parse_head(
            b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length:  5 \r\nX-A: 1", True)
        self.assertEqual((head.version, head.status, head.reason), (b"HTTP/1.1", 200, b"OK"))
        self.assertEqual(head.headers, [(b"Server", b"t"), (b"Content-Length", b"5"), (b"X-A", b"1")])
        self.assertEqual((length, te, close), (b"5", None, False))

    def test_bare_lf_head(self) -> None:
        """A head with bare LF line ends (or mixed) is split per line, CRs stripped."""
        head, _, te, close = parse_head(
            b"HTTP/1.1 204 No Content\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked", False)
        self.assertEqual(head.status, 204)
        self.assertEqual(te, b"gzip,chunked")
        self.assertEqual(head.headers[0], (b"Transfer-Encoding", b"gzip"))

    def test_connection_tokens(self) -> None:
        """HTTP/1.0 closes unless it says keep-alive; ``close`` closes any version."""
        self.assertTrue(parse_head(b"HTTP/1.0 200 OK", True)[3])
        self.assertFalse(parse_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive", True)[3])
        self.assertTrue(parse_head(b"HTTP/1.1 200 OK\r\nConnection: foo, close", True)[3])

    def test_malformed(self) -> None:
        """A bad status line, a field name with space, or two Content-Lengths are refused."""
        for raw in (b"HTTP/2 200 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1 200 OK\r\n X: 1",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2"):
            self.assertRaises(UpstreamProtocolError, parse_head, raw, True)
