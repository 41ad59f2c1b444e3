"""``encode``: Accept-Encoding negotiation, when to compress, and the bytes (decompressed to compare)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import zstandard
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.encode import accepted_encodings
from txcaddy.http.headers import Headers
from txcaddy.testing import FakeResponse, make_request, serve

TEXT = b"".join(b"line %d of some compressible text\n" % i for i in range(100))  # 3.3 KB
GZIP = {"handler": "encode", "encodings": {"gzip": {}}, "prefer": ["gzip"]}
BOTH = {"handler": "encode", "encodings": {"gzip": {}, "zstd": {}}, "prefer": ["zstd", "gzip"]}


def writes(*chunks: bytes, status: int | None = None, headers: dict[str, str] | None = None) -> Any:
    def next_handler(request: Any, response: Any) -> None:
        for name, value in (headers or {}).items():
            response.headers.set(name, value)
        if status is not None:
            response.write_head(status)
        for chunk in chunks:
            response.write(chunk)

    return next_handler


def run(config: dict[str, Any], next: Any, accept: str | None = "gzip", method: str = "GET", extra: dict[str, str] | None = None) -> FakeResponse:
    headers = dict(extra or {})
    if accept is not None:
        headers["Accept-Encoding"] = accept
    return serve(load(config), make_request(method, "/", headers=headers), next=next)


class NegotiationTests(SynchronousTestCase):
    def negotiate(self, accept: str, prefer: list[str] = [], **extra: str) -> list[str]:  # noqa: B006
        headers = Headers([("Accept-Encoding", accept)] if accept else [])
        for name, value in extra.items():
            headers.set(name.replace("_", "-"), value)
        return accepted_encodings(headers, prefer)

    def test_q_values_order(self) -> None:
        """Encodings are ordered by q-value, names and parameters compared without case."""
        self.assertEqual(self.negotiate("gzip, zstd;q=0.5"), ["gzip", "zstd"])
        self.assertEqual(self.negotiate("gzip;q=0.5, zstd"), ["zstd", "gzip"])
        self.assertEqual(self.negotiate("GZIP;Q=0.9, br;q=0.95"), ["br", "gzip"])

    def test_prefer_breaks_ties(self) -> None:
        """Among equal q-values the prefer list decides, the rest keep the client's order."""
        self.assertEqual(self.negotiate("gzip, zstd", ["zstd", "gzip"]), ["zstd", "gzip"])
        self.assertEqual(self.negotiate("gzip, br, zstd", ["zstd"]), ["zstd", "gzip", "br"])

    def test_zero_and_bad_q(self) -> None:
        """q=0, or below the cut-off as a float32, refuses; malformed or out-of-range q is 1."""
        self.assertEqual(self.negotiate("gzip;q=0, zstd"), ["zstd"])
        # q=0.00001 is below the cut-off once rounded to float32, as in Go
        self.assertEqual(self.negotiate("gzip;q=0.00001, zstd"), ["zstd"])
        # malformed or out-of-range q means 1
        self.assertEqual(self.negotiate("zstd;q=0.5, gzip;q= 0.1, br;q=2"), ["gzip", "br", "zstd"])
        self.assertEqual(self.negotiate("zstd;q=0.5, gzip;q=0x1p-3"), ["zstd", "gzip"])

    def test_websocket_only_identity(self) -> None:
        """A WebSocket handshake is offered only identity."""
        self.assertEqual(self.negotiate("gzip, identity", Sec_WebSocket_Key="x"), ["identity"])

    def test_empty(self) -> None:
        """No Accept-Encoding accepts no encoding."""
        self.assertEqual(self.negotiate(""), [])

class CompressTests(SynchronousTestCase):
    def assertGzip(self, response: FakeResponse, expected: bytes) -> None:
        self.assertEqual(response.headers.get("Content-Encoding"), "gzip")
        self.assertEqual(gzip.decompress(response.body), expected)

    def test_large_text_is_gzipped(self) -> None:
        """Large text is gzipped; Vary gains Accept-Encoding, length and ranges are dropped."""
        response = run(GZIP, writes(TEXT, headers={"Content-Type": "text/plain", "Content-Length": str(len(TEXT)),
                                                   "Accept-Ranges": "bytes", "Vary": "Origin"}))
        self.assertEqual(response.status, 200)
        self.assertGzip(response, TEXT)
        self.assertEqual(response.headers.get_all("Vary"), ["Origin", "Accept-Encoding"])
        self.assertNotIn("Content-Length", response.headers)
        self.assertNotIn("Accept-Ranges", response.headers)
        self.assertLess(len(response.body), len(TEXT) // 4)

    def test_status_kept(self) -> None:
        """The handler's status is kept on a compressed response."""
        response = run(GZIP, writes(TEXT, status=404, headers={"Content-Type": "text/html"}))
        self.assertEqual(response.status, 404)
        self.assertGzip(response, TEXT)

    def test_small_first_write_is_not_compressed(self) -> None:
        """A first write under the minimum length is sent plain; nothing is buffered to decide."""
        # the decision is taken on the first write only; nothing is buffered
        response = run(GZIP, writes(TEXT[:512], TEXT[512:], headers={"Content-Type": "text/plain"}))
        self.assertNotIn("Content-Encoding", response.headers)
        self.assertNotIn("Vary", response.headers)
        self.assertEqual(response.body, TEXT)

    def test_content_length_decides_for_small_first_write(self) -> None:
        """A long Content-Length makes a small first write compressed."""
        response = run(GZIP, writes(TEXT[:100], TEXT[100:], headers={"Content-Type": "text/plain", "Content-Length": str(len(TEXT))}))
        self.assertGzip(response, TEXT)

    def test_minimum_length(self) -> None:
        """Bodies longer than minimum_length are compressed, not those of that length."""
        config = {**GZIP, "minimum_length": 10}
        self.assertGzip(run(config, writes(b"x" * 11, headers={"Content-Type": "text/plain"})), b"x" * 11)
        self.assertNotIn("Content-Encoding", run(config, writes(b"x" * 10, headers={"Content-Type": "text/plain"})).headers)

    def test_content_type_not_in_default_list(self) -> None:
        """Only the default compressible types are compressed: image/png is not, JSON is."""
        response = run(GZIP, writes(TEXT, headers={"Content-Type": "image/png"}))
        self.assertNotIn("Content-Encoding", response.headers)
        self.assertEqual(response.body, TEXT)
        for content_type in ("application/json; charset=utf-8", "image/svg+xml", "application/javascript"):
            self.assertGzip(run(GZIP, writes(TEXT, headers={"Content-Type": content_type})), TEXT)

    def test_missing_content_type_is_sniffed(self) -> None:
        """A missing Content-Type is sniffed first and then decides compression."""
        response = run(GZIP, writes(TEXT))
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; charset=utf-8")
        self.assertGzip(response, TEXT)
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 600
        response = run(GZIP, writes(png))
        self.assertEqual(response.headers.get("Content-Type"), "image/png")
        self.assertEqual(response.body, png)

    def test_already_encoded(self) -> None:
        """A response that already has a Content-Encoding is passed through untouched."""
        body = gzip.compress(TEXT)
        response = run(GZIP, writes(body + b"\x00" * 600, headers={"Content-Type": "text/plain", "Content-Encoding": "br"}))
        self.assertEqual(response.headers.get_all("Content-Encoding"), ["br"])
        self.assertEqual(response.body, body + b"\x00" * 600)

    def test_client_without_gzip(self) -> None:
        """Clients that do not accept gzip get the body plain."""
        for accept in (None, "br", "gzip;q=0", "identity"):
            response = run(GZIP, writes(TEXT, headers={"Content-Type": "text/plain"}), accept=accept)
            self.assertNotIn("Content-Encoding", response.headers, accept)
            self.assertEqual(response.body, TEXT)

    def test_zstd_preferred(self) -> None:
        """zstd is used when preferred and accepted as much; a lower q for it gives gzip."""
        response = run(BOTH, writes(TEXT, headers={"Content-Type": "text/plain"}), accept="gzip, zstd")
        self.assertEqual(response.headers.get("Content-Encoding"), "zstd")
        self.assertEqual(zstandard.ZstdDecompressor().decompressobj().decompress(response.body), TEXT)
        response = run(BOTH, writes(TEXT, headers={"Content-Type": "text/plain"}), accept="gzip, zstd;q=0.5")
        self.assertGzip(response, TEXT)

    def test_gzip_level(self) -> None:
        """The configured gzip level is the one used to compress."""
        body = bytes(range(256)) * 40
        fast = run({**GZIP, "encodings": {"gzip": {"level": 1}}}, writes(body, headers={"Content-Type": "text/plain"}))
        best = run({**GZIP, "encodings": {"gzip": {"level": 9}}}, writes(body, headers={"Content-Type": "text/plain"}))
        self.assertEqual(gzip.decompress(fast.body), body)
        self.assertEqual(gzip.decompress(best.body), body)
        self.assertEqual((fast.body[8], best.body[8]), (4, 2))  # the gzip XFL byte: fastest, best
        self.assertLess(len(best.body), len(fast.body))

    def test_match_status_needs_an_explicit_status(self) -> None:
        """A status matcher matches only the status the handler wrote explicitly."""
        config = {**GZIP, "match": {"status_code": [2]}}
        # Caddy matches the status the handler wrote; a bare write has none (0)
        self.assertNotIn("Content-Encoding", run(config, writes(TEXT)).headers)
        self.assertGzip(run(config, writes(TEXT, status=200)), TEXT)
        self.assertNotIn("Content-Encoding", run(config, writes(TEXT, status=500)).headers)

    def test_streams_without_buffering(self) -> None:
        """flush sends what was written so far, compressed and decodable at once."""
        chunks: list[int] = []

        def stream(request: Any, response: Any) -> None:
            response.headers.set("Content-Type", "text/plain")
            response.write(TEXT)
            chunks.append(len(response.inner.body))
            response.flush()
            chunks.append(len(response.inner.body))
            # what was sent so far decompresses to everything written so far
            self.assertEqual(zlib.decompressobj(31).decompress(response.inner.body), TEXT)
            response.write(TEXT)

        response = run(GZIP, stream)
        self.assertGzip(response, TEXT + TEXT)
        self.assertGreater(chunks[1], chunks[0])

    def test_nothing_written(self) -> None:
        """A response with no body is neither compressed nor marked so."""
        response = run(GZIP, writes(status=204))
        self.assertEqual((response.status, response.body), (204, b""))
        self.assertNotIn("Content-Encoding", response.headers)

    def test_head_with_long_content_length(self) -> None:
        """HEAD with a long Content-Length gets the encoded headers, as Caddy's Close does."""
        # Caddy's Close: nothing written, but the Content-Length says "long": encoded headers
        response = run(GZIP, writes(status=200, headers={"Content-Type": "text/plain", "Content-Length": "5000"}), method="HEAD")
        self.assertEqual(response.headers.get("Content-Encoding"), "gzip")
        self.assertNotIn("Content-Length", response.headers)

    def test_finish_by_the_handler(self) -> None:
        """A handler's finish ends the compressed stream properly."""
        def finishing(request: Any, response: Any) -> None:
            response.headers.set("Content-Type", "text/plain")
            response.write(TEXT)
            response.finish()

        response = run(GZIP, finishing)
        self.assertTrue(response.ended)
        self.assertGzip(response, TEXT)

    def test_asynchronous_handler(self) -> None:
        """A handler that answers later still has its body compressed."""
        later: Deferred[None] = Deferred()
        holder: list[Any] = []

        def async_handler(request: Any, response: Any) -> Deferred[None]:
            holder.append(response)
            return later

        request = make_request(headers={"Accept-Encoding": "gzip"})
        response = FakeResponse()
        result = load(GZIP).serve(request, response, async_handler)
        holder[0].headers.set("Content-Type", "text/plain")
        holder[0].write(TEXT)
        later.callback(None)
        self.assertIsNone(self.successResultOf(result))
        response.finish()
        self.assertEqual(gzip.decompress(response.body), TEXT)

    def test_error_passes_through(self) -> None:
        """A handler error passes through encode with no head or encoding written."""
        def failing(request: Any, response: Any) -> None:
            raise HandlerError(502, "dial")

        response = FakeResponse()
        with self.assertRaises(HandlerError):
            load(GZIP).serve(make_request(headers={"Accept-Encoding": "gzip"}), response, failing)
        self.assertFalse(response.head_sent)
        self.assertNotIn("Content-Encoding", response.headers)


class LoadTests(SynchronousTestCase):
    def test_every_adapter_fixture_loads(self) -> None:
        """Every encode in the adapter fixtures loads and serves, or is refused as Caddy does."""
        configs = list(fixture_handlers("encode"))
        self.assertGreater(len(configs), 3)
        for where, config in configs:
            if len(set(config.get("prefer", []))) != len(config.get("prefer", [])):
                # Caddy's Validate rejects this at load time too
                with self.assertRaises(ConfigError, msg=where) as caught:
                    load(config)
                self.assertIn("duplicated in prefer", str(caught.exception))
                continue
            response = run(config, writes(TEXT, status=200, headers={"Content-Type": "text/plain"}), accept="gzip, zstd")
            self.assertEqual(response.status, 200, where)

    def test_bad_config(self) -> None:
        """Bad levels, prefer entries not configured and unknown encoders are refused."""
        for bad in (
            {**GZIP, "encodings": {"gzip": {"level": 10}}},
            {**GZIP, "encodings": {"gzip": {"level": -4}}},
            {**GZIP, "prefer": ["zstd"]},
            {**GZIP, "encodings": {"brotli": {}}},
        ):
            with self.assertRaises(ConfigError, msg=str(bad)):
                load(bad)
