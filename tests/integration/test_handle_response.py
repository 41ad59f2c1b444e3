"""``handle_response``, ``replace_status``, ``copy_response[_headers]`` and ``forward_auth``
end to end: txcaddy from a Caddyfile, scripted upstreams and clients on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from tests._net import listen_local, port_number
from tests.integration.test_h2c_upstream import H2Upstream
from tests.reverseproxy._backends import (
    EchoBackend,
    RawBackend,
    _RawProtocol,
    _split_request,
    site,
    start_proxy,
)


def _free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reply(status: str, headers: dict[str, str], body: bytes, chunked: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        data = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + data
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


class ScriptedBackend(RawBackend):
    """Answers each request with the reply scripted for its path (keeps connections open)."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        super().__init__()
        self.replies = replies
        self.lost: list[_RawProtocol] = []

    def on_data(self, conn: _RawProtocol) -> None:
        while True:
            request = _split_request(bytes(conn.received[conn.consumed:]))
            if request is None:
                return
            self.requests.append(request)
            conn.consumed += len(request)
            path = request.split(b" ", 2)[1].decode()
            conn.transport.write(self.replies[path])
            self._fire()

    def on_lost(self, conn: _RawProtocol) -> None:
        self.lost.append(conn)
        super().on_lost(conn)


class HandleResponseTestCase(TestCase):
    timeout = 30

    def scripted(self, replies: dict[str, bytes]) -> ScriptedBackend:
        backend = ScriptedBackend(replies)
        self.addCleanup(backend.stop)
        return backend

    def backend(self, name: str, handler: Any = None) -> EchoBackend:
        backend = EchoBackend(name, handler)
        self.addCleanup(backend.stop)
        return backend

    def proxy(self, directives: str) -> str:
        return start_proxy(self, site(directives))

    @inlineCallbacks
    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = yield treq.request(method, url, persistent=False, allow_redirects=False, **kwargs)
        body = yield response.content()
        return response, body


class HandleResponseTests(HandleResponseTestCase):
    @inlineCallbacks
    def test_status_match_runs_routes_with_upstream_placeholders(self) -> Any:
        """A 401 from the upstream runs the route: respond sees its status, text and header; its body is dropped."""
        upstream = self.scripted({
            "/deny": _reply("401 Unauthorized", {"X-Reason": "bad token"}, b"upstream secret"),
            "/ok": _reply("200 OK", {"X-Up": "1"}, b"fine"),
        })
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\t@unauth status 401
\t\thandle_response @unauth {{
\t\t\trespond "denied {{rp.status_code}} [{{rp.status_text}}] {{rp.header.X-Reason}}" 403
\t\t}}
\t}}""")
        response, body = yield self.request("GET", base + "/deny")
        self.assertEqual(response.code, 403)
        self.assertEqual(body, b"denied 401 [401 Unauthorized] bad token")
        self.assertIsNone(response.headers.getRawHeaders("X-Reason"))
        # an unmatched response is relayed as usual, over the same (drained) upstream connection
        response, body = yield self.request("GET", base + "/ok")
        self.assertEqual((response.code, body), (200, b"fine"))
        self.assertEqual(response.headers.getRawHeaders("X-Up"), ["1"])
        self.assertEqual(len(upstream.connections), 1)
        self.assertEqual(upstream.lost, [])

    @inlineCallbacks
    def test_status_class_and_header_matchers(self) -> Any:
        """``status 5xx`` and ``header`` response matchers pick their handle_response; the first match wins."""
        upstream = self.scripted({
            "/boom": _reply("503 Service Unavailable", {}, b"x"),
            "/tagged": _reply("200 OK", {"X-Tag": "special-one"}, b"y"),
            "/plain": _reply("200 OK", {}, b"plain"),
        })
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\t@err status 5xx
\t\thandle_response @err {{
\t\t\trespond "server error {{rp.status_code}}"
\t\t}}
\t\t@tagged header X-Tag special*
\t\thandle_response @tagged {{
\t\t\trespond "tagged {{rp.header.X-Tag}}"
\t\t}}
\t}}""")
        results = []
        for path in ("/boom", "/tagged", "/plain"):
            response, body = yield self.request("GET", base + path)
            results.append((response.code, body))
        self.assertEqual(results, [(200, b"server error 503"), (200, b"tagged special-one"), (200, b"plain")])
        self.assertEqual(len(upstream.connections), 1)

    @inlineCallbacks
    def test_copy_response_streams_the_upstream_body(self) -> Any:
        """copy_response sends the upstream body and fields, with its own status and the route's headers."""
        body_sent = b"0123456789" * 20000  # 200 kB: streamed, not held
        upstream = self.scripted({"/": _reply("404 Not Found", {"X-Up": "yes", "Content-Type": "text/plain"},
                                              body_sent, chunked=True)})
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\t@nf status 404
\t\thandle_response @nf {{
\t\t\theader X-Route "saw {{rp.status_code}}"
\t\t\tcopy_response 410
\t\t}}
\t}}""")
        response, body = yield self.request("GET", base + "/")
        self.assertEqual(response.code, 410)
        self.assertEqual(body, body_sent)
        self.assertEqual(response.headers.getRawHeaders("X-Up"), ["yes"])
        self.assertEqual(response.headers.getRawHeaders("X-Route"), ["saw 404"])

    @inlineCallbacks
    def test_replace_status_keeps_the_body(self) -> Any:
        """replace_status changes only the status; the upstream's body and headers still go out."""
        upstream = self.scripted({"/": _reply("404 Not Found", {"X-Up": "1"}, b"the page")})
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\t@nf status 404
\t\treplace_status @nf 200
\t}}""")
        response, body = yield self.request("GET", base + "/")
        self.assertEqual((response.code, body), (200, b"the page"))
        self.assertEqual(response.headers.getRawHeaders("X-Up"), ["1"])

    @inlineCallbacks
    def test_copy_response_headers_include_and_exclude(self) -> Any:
        """copy_response_headers copies only the included fields, or all but the excluded ones.

        Content-Length is excluded too: copied, it would announce the upstream's length for the
        route's own body (Caddy copies it the same way).
        """
        reply = _reply("200 OK", {"X-A": "a", "X-B": "b", "X-C": "c"}, b"dropped")
        upstream = self.scripted({"/inc": reply, "/exc": reply})
        base = self.proxy(f"""\t@inc path /inc
\treverse_proxy @inc {upstream.address} {{
\t\thandle_response {{
\t\t\tcopy_response_headers {{
\t\t\t\tinclude X-A x-c
\t\t\t}}
\t\t\trespond "inc"
\t\t}}
\t}}
\t@exc path /exc
\treverse_proxy @exc {upstream.address} {{
\t\thandle_response {{
\t\t\tcopy_response_headers {{
\t\t\t\texclude X-A Content-Length
\t\t\t}}
\t\t\trespond "exc"
\t\t}}
\t}}""")
        response, body = yield self.request("GET", base + "/inc")
        self.assertEqual(body, b"inc")
        got = {name: response.headers.getRawHeaders(name) for name in ("X-A", "X-B", "X-C")}
        self.assertEqual(got, {"X-A": ["a"], "X-B": None, "X-C": ["c"]})
        response, body = yield self.request("GET", base + "/exc")
        self.assertEqual(body, b"exc")
        got = {name: response.headers.getRawHeaders(name) for name in ("X-A", "X-B", "X-C")}
        self.assertEqual(got, {"X-A": None, "X-B": ["b"], "X-C": ["c"]})

    @inlineCallbacks
    def test_small_discarded_bodies_keep_the_connection(self) -> Any:
        """Dropped bodies up to 64 KiB (sized or chunked) are drained: two requests, one upstream connection."""
        upstream = self.scripted({
            "/sized": _reply("500 Internal Server Error", {}, b"s" * 60000),
            "/chunked": _reply("500 Internal Server Error", {}, b"c" * 1000, chunked=True),
        })
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\thandle_response {{
\t\t\trespond "replaced"
\t\t}}
\t}}""")
        for path in ("/sized", "/chunked", "/sized"):
            response, body = yield self.request("GET", base + path)
            self.assertEqual((response.code, body), (200, b"replaced"))
        self.assertEqual(len(upstream.requests), 3)
        self.assertEqual(len(upstream.connections), 1)
        self.assertEqual(upstream.lost, [])

    @inlineCallbacks
    def test_large_discarded_body_closes_the_connection(self) -> Any:
        """A dropped body over 64 KiB closes the upstream connection; the next request dials anew."""
        upstream = self.scripted({"/": _reply("200 OK", {}, b"L" * 100000)})
        base = self.proxy(f"""\treverse_proxy {upstream.address} {{
\t\thandle_response {{
\t\t\trespond "short"
\t\t}}
\t}}""")
        response, body = yield self.request("GET", base + "/")
        self.assertEqual(body, b"short")
        response, body = yield self.request("GET", base + "/")
        self.assertEqual(body, b"short")
        self.assertEqual(len(upstream.connections), 2)
        self.assertIn(upstream.connections[0], upstream.lost)


def _headers_of(seen: dict[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return headers


class ForwardAuthTests(HandleResponseTestCase):
    def auth_service(self) -> EchoBackend:
        """Allows ``Authorization: good``, redirects ``redirect``, refuses everything else."""

        def decide(request: Any, seen: dict[str, Any], body: bytes) -> bytes:
            token = request.getHeader(b"authorization")
            if token == b"good":
                request.setHeader(b"Remote-User", b"alice")
                request.setHeader(b"Remote-Groups", b"admins")
                return b"auth body"
            if token == b"redirect":
                request.setResponseCode(302)
                request.setHeader(b"Location", b"https://login.example/")
                return b""
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Basic realm="x"')
            return b"no entry"

        return self.backend("auth", decide)

    def protected(self, auth_address: str, app: EchoBackend) -> str:
        return self.proxy(f"""\thandle /public {{
\t\trespond "alive"
\t}}
\t@private not path /public
\tforward_auth @private {auth_address} {{
\t\turi /verify?app=1
\t\tcopy_headers Remote-User Remote-Groups>X-Groups
\t}}
\treverse_proxy {app.address}""")

    @inlineCallbacks
    def test_allowed_request_gets_copied_headers(self) -> Any:
        """On 2xx the app gets the request (body intact) with the auth service's headers copied and renamed."""
        auth = self.auth_service()
        app = self.backend("app")
        base = self.protected(auth.address, app)
        response, body = yield self.request(
            "POST", base + "/orders?id=7", data=b"payload!", headers={"Authorization": "good"})
        self.assertEqual(response.code, 200)
        seen = json.loads(body)
        self.assertEqual(seen["backend"], "app")
        self.assertEqual((seen["method"], seen["uri"], seen["body_length"]), ("POST", "/orders?id=7", 8))
        headers = _headers_of(seen)
        self.assertEqual(headers["remote-user"], ["alice"])
        self.assertEqual(headers["x-groups"], ["admins"])
        self.assertNotIn("remote-groups", headers)
        # what the auth service saw: a GET to its uri, no body, the X-Forwarded-* fields
        (check,) = auth.requests
        self.assertEqual((check["method"], check["uri"], check["body_length"]), ("GET", "/verify?app=1", 0))
        auth_headers = _headers_of(check)
        host = base.split("//")[1]
        self.assertEqual(auth_headers["x-forwarded-method"], ["POST"])
        self.assertEqual(auth_headers["x-forwarded-uri"], ["/orders?id=7"])
        self.assertEqual(auth_headers["x-forwarded-host"], [host])
        self.assertEqual(auth_headers["x-forwarded-proto"], ["http"])
        self.assertEqual(auth_headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(auth_headers["authorization"], ["good"])
        self.assertNotIn("content-length", auth_headers)
        self.assertNotIn("transfer-encoding", auth_headers)

    @inlineCallbacks
    def test_refused_request_gets_the_auth_response(self) -> Any:
        """A 401 from the auth service goes to the client as it is; the app is never reached."""
        auth = self.auth_service()
        app = self.backend("app")
        base = self.protected(auth.address, app)
        response, body = yield self.request("POST", base + "/orders", data=b"payload!")
        self.assertEqual((response.code, body), (401, b"no entry"))
        self.assertEqual(response.headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="x"'])
        self.assertEqual(app.requests, [])

    @inlineCallbacks
    def test_redirect_goes_to_the_client(self) -> Any:
        """A 302 from the auth service is relayed with its Location; the app is never reached."""
        auth = self.auth_service()
        app = self.backend("app")
        base = self.protected(auth.address, app)
        response, _ = yield self.request("GET", base + "/", headers={"Authorization": "redirect"})
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders("Location"), ["https://login.example/"])
        self.assertEqual(app.requests, [])

    @inlineCallbacks
    def test_unreachable_auth_service_is_502(self) -> Any:
        """An auth service nobody listens on answers 502; the server goes on serving."""
        app = self.backend("app")
        base = self.protected(f"127.0.0.1:{_free_port()}", app)
        response, _ = yield self.request("GET", base + "/x", headers={"Authorization": "good"})
        self.assertEqual(response.code, 502)
        response, body = yield self.request("GET", base + "/public")
        self.assertEqual((response.code, body), (200, b"alive"))
        self.assertEqual(app.requests, [])


class H2cHandleResponseTests(HandleResponseTestCase):
    @inlineCallbacks
    def test_dropped_bodies_over_h2c(self) -> Any:
        """An h2c upstream's response handled by routes is dropped stream by stream; the connection serves on."""
        connections: list[H2Upstream] = []

        class Counting(Factory):
            def buildProtocol(self, addr: Any) -> H2Upstream:
                protocol = H2Upstream()
                connections.append(protocol)
                return protocol

        port = listen_local(Counting())
        self.addCleanup(port.stopListening)
        base = self.proxy(f"""\treverse_proxy h2c://127.0.0.1:{port_number(port)} {{
\t\t@created status 201
\t\thandle_response @created {{
\t\t\trespond "handled {{rp.status_code}} {{rp.header.X-Upstream}}"
\t\t}}
\t}}""")
        for _ in range(2):
            response, body = yield self.request("GET", base + "/")
            self.assertEqual((response.code, body), (200, b"handled 201 h2"))
        self.assertEqual(len(connections), 1)
        self.assertEqual(sorted(connections[0].bodies), [1, 3])  # two streams on one connection
