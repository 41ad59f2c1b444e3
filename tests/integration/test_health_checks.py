"""Health checks end to end: real Twisted backends, the proxy and clients on 127.0.0.1.

Nothing sleeps: the tests wait on the checker's ``next_round()`` Deferred, on
responses, or on a Deferred fired by ``reactor.callLater`` once a configured
``fail_duration`` has passed.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import treq
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from tests.reverseproxy._backends import EchoBackend, site
from txcaddy import fromCaddyfile
from txcaddy.reverseproxy.health import ActiveHealthChecker
from txcaddy.reverseproxy.hosts import HostRegistry

reactor: Any = _reactor


def _free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Answer(resource.Resource):
    isLeaf = True

    def __init__(self, backend: RestartableBackend) -> None:
        super().__init__()
        self.backend = backend

    def render(self, request: Any) -> bytes:
        uri = request.uri.decode("latin-1")
        self.backend.seen.append(uri)
        if uri == "/boom":
            request.setResponseCode(500)
            return b"backend says boom"
        return json.dumps({"backend": self.backend.name, "uri": uri}).encode()


class RestartableBackend:
    """An upstream that can go down (listener and connections closed) and come back on
    the same port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []
        site = server.Site(_Answer(self))
        site.noisy = False
        self.factory = WrappingFactory(site)  # it keeps the open connections
        self.port: Any = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.number = self.port.getHost().port
        self.address = f"127.0.0.1:{self.number}"

    def stop(self) -> Any:
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None

    def start(self) -> None:
        self.port = reactor.listenTCP(self.number, self.factory, interface="127.0.0.1")


class HealthTestCase(TestCase):
    timeout = 20

    def backend(self, name: str, handler: Any = None) -> EchoBackend:
        backend = EchoBackend(name, handler)
        self.addCleanup(backend.stop)
        return backend

    def proxy(self, directives: str) -> str:
        service = fromCaddyfile(site(directives).replace("PORT", "0"), reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        (address,) = next(iter(service.boundAddresses().values()))
        return f"http://127.0.0.1:{address.port}"

    def checker(self) -> ActiveHealthChecker:
        (checker,) = [child for child in self.service if isinstance(child, ActiveHealthChecker)]
        return checker

    @inlineCallbacks
    def rounds_until(self, predicate: Any, most: int) -> Any:
        """Wait for checker rounds until ``predicate()``; return how many it took."""
        checker = self.checker()
        for count in range(1, most + 1):
            yield checker.next_round()
            if predicate():
                return count
        self.fail(f"not reached within {most} rounds")

    @inlineCallbacks
    def get(self, url: str) -> Any:
        response = yield treq.get(url, persistent=False)
        body = yield response.content()
        return response, body


def _health_switch(state: dict[str, int]) -> Any:
    """An EchoBackend handler answering /health with ``state["status"]``."""

    def handler(request: Any, seen: Any, body: bytes) -> Any:
        if seen["uri"] == "/health":
            request.setResponseCode(state["status"])
            return b"health"
        return None

    return handler


def _proxied(backend: EchoBackend) -> list[str]:
    return [r["uri"] for r in backend.requests if r["uri"] != "/health"]


class ActiveHealthTests(HealthTestCase):
    @inlineCallbacks
    def test_a_failing_upstream_is_taken_out_and_comes_back(self) -> Any:
        """An upstream failing its health_uri probe leaves the pool; passing again, it is back."""
        state = {"status": 200}
        a = self.backend("a", _health_switch(state))
        b = self.backend("b")
        base = self.proxy(
            f"\treverse_proxy {a.address} {b.address} {{\n"
            "\t\thealth_uri /health\n\t\thealth_interval 200ms\n\t\thealth_timeout 1s\n"
            "\t\thealth_headers {\n\t\t\tX-Probe yes\n\t\t}\n\t}")
        yield self.checker().next_round()
        probe = next(r for r in a.requests if r["uri"] == "/health")
        self.assertEqual(probe["method"], "GET")
        headers = dict(probe["headers"])
        self.assertEqual((headers["Host"], headers["X-Probe"]), (a.address, "yes"))
        for i in range(4):
            response, _ = yield self.get(f"{base}/up{i}")
            self.assertEqual(response.code, 200)
        self.assertEqual((_proxied(a), _proxied(b)), (["/up0", "/up2"], ["/up1", "/up3"]))

        state["status"] = 500
        host = self.service.runtime.get(HostRegistry).get(a.address)
        assert host is not None
        rounds = yield self.rounds_until(lambda: host.unhealthy, 2)
        self.assertLessEqual(rounds, 2)
        for i in range(4):
            response, body = yield self.get(f"{base}/down{i}")
            self.assertEqual((response.code, json.loads(body)["backend"]), (200, "b"))
        self.assertNotIn("/down0", _proxied(a))

        state["status"] = 200
        yield self.rounds_until(lambda: not host.unhealthy, 2)
        backends = []
        for i in range(2):
            response, body = yield self.get(f"{base}/back{i}")
            backends.append(json.loads(body)["backend"])
        self.assertEqual(sorted(backends), ["a", "b"])

    @inlineCallbacks
    def test_all_upstreams_unhealthy_is_503(self) -> Any:
        """With every upstream failing its probe, the proxy answers 503 without dialling."""
        a = self.backend("a", _health_switch({"status": 503}))
        base = self.proxy(
            f"\treverse_proxy {a.address} 127.0.0.1:{_free_port()} {{\n"
            "\t\thealth_uri /health\n\t\thealth_interval 200ms\n\t}")
        yield self.checker().next_round()  # a refusing upstream fails its probe too
        response, _ = yield self.get(base + "/")
        self.assertEqual(response.code, 503)
        self.assertEqual(_proxied(a), [])

    @inlineCallbacks
    def test_healthy_but_refusing_upstreams_are_502(self) -> Any:
        # health_port sends the probes to a live health endpoint while the upstreams'
        # own ports refuse connections: they stay healthy and the proxy answers 502.
        """Upstreams healthy on health_port but refusing connections get a 502."""
        health = self.backend("health")
        health_port = health.address.rsplit(":", 1)[1]
        base = self.proxy(
            f"\treverse_proxy 127.0.0.1:{_free_port()} 127.0.0.1:{_free_port()} {{\n"
            f"\t\thealth_port {health_port}\n\t\thealth_uri /health\n\t\thealth_interval 200ms\n\t}}")
        yield self.checker().next_round()
        self.assertGreaterEqual(len(health.requests), 2)
        response, _ = yield self.get(base + "/")
        self.assertEqual(response.code, 502)


class PassiveHealthTests(HealthTestCase):
    @inlineCallbacks
    def test_5xx_marks_the_upstream_down_for_fail_duration(self) -> Any:
        """An unhealthy_status response is delivered and takes its upstream out for a while."""
        def boom(request: Any, seen: Any, body: bytes) -> bytes:
            request.setResponseCode(500)
            return b"a failed"

        a = self.backend("a", boom)
        b = self.backend("b")
        base = self.proxy(
            f"\treverse_proxy {a.address} {b.address} {{\n"
            "\t\tlb_policy first\n\t\tlb_try_duration 1s\n"
            "\t\tfail_duration 500ms\n\t\tmax_fails 1\n\t\tunhealthy_status 5xx\n\t}")
        response, body = yield self.get(base + "/one")
        self.assertEqual((response.code, body), (500, b"a failed"))  # delivered, not retried
        self.assertEqual(b.requests, [])
        marked = reactor.seconds()
        response, body = yield self.get(base + "/two")
        self.assertEqual((response.code, json.loads(body)["backend"]), (200, "b"))
        yield deferLater(reactor, max(0.0, marked + 0.55 - reactor.seconds()))
        response, body = yield self.get(base + "/three")
        self.assertEqual(response.code, 500)  # a is back in the pool
        self.assertEqual([r["uri"] for r in a.requests], ["/one", "/three"])

    @inlineCallbacks
    def test_slow_responses_mark_the_upstream_down(self) -> Any:
        """A response slower than unhealthy_latency takes its upstream out for fail_duration."""
        def slow(request: Any, seen: Any, body: bytes) -> Any:
            def answer() -> None:
                request.write(b"slow but fine")
                request.finish()

            reactor.callLater(0.15, answer)
            return server.NOT_DONE_YET

        a = self.backend("a", slow)
        b = self.backend("b")
        base = self.proxy(
            f"\treverse_proxy {a.address} {b.address} {{\n"
            "\t\tlb_policy first\n\t\tfail_duration 600ms\n\t\tunhealthy_latency 100ms\n\t}")
        response, body = yield self.get(base + "/one")
        self.assertEqual((response.code, body), (200, b"slow but fine"))
        marked = reactor.seconds()
        response, body = yield self.get(base + "/two")
        self.assertEqual(json.loads(body)["backend"], "b")
        yield deferLater(reactor, max(0.0, marked + 0.65 - reactor.seconds()))
        response, body = yield self.get(base + "/three")
        self.assertEqual(body, b"slow but fine")

    @inlineCallbacks
    def test_unhealthy_request_count_limits_requests_in_flight(self) -> Any:
        """An upstream at unhealthy_request_count requests in flight is skipped until one ends."""
        held: list[Any] = []
        arrived: Deferred[None] = Deferred()

        def hold(request: Any, seen: Any, body: bytes) -> Any:
            if seen["uri"] != "/held":
                return None
            held.append(request)
            arrived.callback(None)
            return server.NOT_DONE_YET

        a = self.backend("a", hold)
        b = self.backend("b")
        base = self.proxy(
            f"\treverse_proxy {a.address} {b.address} {{\n"
            "\t\tlb_policy first\n\t\tunhealthy_request_count 1\n\t}")
        first = treq.get(base + "/held", persistent=False)
        yield arrived  # the held request reached the backend
        response, body = yield self.get(base + "/next")
        self.assertEqual(json.loads(body)["backend"], "b")  # a is full
        held[0].write(b"released")
        held[0].finish()
        response = yield first
        self.assertEqual((yield response.content()), b"released")
        response, body = yield self.get(base + "/after")
        self.assertEqual(json.loads(body)["backend"], "a")  # free again
        self.assertEqual([r["uri"] for r in a.requests], ["/held", "/after"])


class MaintenancePageTests(HealthTestCase):
    """The tutorial's maintenance fallback (seed example 18) against a backend that stops
    and starts again."""

    @inlineCallbacks
    def test_page_while_down_proxy_again_when_back(self) -> Any:
        """A stopped backend gets the maintenance page (502, then 503 while marked down);
        once restarted and fail_duration has passed, requests are proxied again."""
        backend = RestartableBackend("app")
        self.addCleanup(backend.stop)
        root = self.mktemp()
        os.makedirs(root)
        page = b"<h1>Back soon</h1>\n"
        with open(os.path.join(root, "maintenance.html"), "wb") as f:
            f.write(page)
        base = self.proxy(
            f"\treverse_proxy {backend.address} {{\n\t\tfail_duration 500ms\n\t\tmax_fails 1\n\t}}\n"
            f"\thandle_errors {{\n\t\troot * {root}\n\t\ttry_files /maintenance.html =503\n"
            "\t\tfile_server\n\t}")
        response, body = yield self.get(base + "/")
        self.assertEqual((response.code, json.loads(body)["backend"]), (200, "app"))
        response, body = yield self.get(base + "/boom")
        self.assertEqual((response.code, body), (500, b"backend says boom"))  # the upstream's own 5xx

        yield backend.stop()
        response, body = yield self.get(base + "/")
        self.assertEqual((response.code, body), (502, page))  # the failed dial
        down = reactor.seconds()
        response, body = yield self.get(base + "/")
        self.assertEqual((response.code, body), (503, page))  # marked down: no upstream
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["text/html; charset=utf-8"])

        backend.start()
        response, body = yield self.get(base + "/")
        self.assertEqual((response.code, body), (503, page))  # still within fail_duration
        yield deferLater(reactor, max(0.0, down + 0.55 - reactor.seconds()))
        response, body = yield self.get(base + "/again")
        self.assertEqual((response.code, json.loads(body)["uri"]), (200, "/again"))
