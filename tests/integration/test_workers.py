"""``workers 2`` with real processes on 127.0.0.1: requests reach every worker, a killed
worker costs no refused connection and is restarted, rolling reloads lose no request, a
failed reload changes nothing, health marks reach every worker, and a graceful stop.

Each test starts ``txcaddy run --workers 2`` (``tests._child``), waits on its output for
readiness, and loads it with a bounded number of connection-per-request GETs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests._child import free_port, spawn_txcaddy
from txcaddy._reactor import default_reactor


def _static(body: str) -> list[dict[str, Any]]:
    return [{"handle": [{"handler": "static_response", "body": body}]}]


class _Held(Protocol):
    """An upstream that answers only when the test says so."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.factory.held.append(self)  # type: ignore[attr-defined]
        if not self.factory.arrived.called:  # type: ignore[attr-defined]
            self.factory.arrived.callback(None)  # type: ignore[attr-defined]

    def answer(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class _Backend(Resource):
    """An upstream counting its requests; ``/health`` answers ``health``."""

    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name
        self.health = 200
        self.requests = 0

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted's name
        if request.path == b"/health":
            request.setResponseCode(self.health)
            return b"health"
        self.requests += 1
        return self.name


class WorkersCase(TestCase):
    """Starts the server and loads it; the tests are in the subclasses."""

    timeout = 120

    def setUp(self) -> None:
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.port = free_port()
        self.admin = free_port()

    def config(self, routes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "workers": 2,
            "apps": {"http": {"grace_period": "10s", "servers": {"srv0": {
                "listen": [f"127.0.0.1:{self.port}"], "routes": routes, "logs": {}}}}},
        }

    @inlineCallbacks
    def start(self, config: dict[str, Any], env: dict[str, str] | None = None) -> Any:
        path = os.path.join(self.home, "caddy.json")
        with open(path, "w") as f:
            json.dump(config, f)
        environ = {"HOME": self.home, "XDG_CONFIG_HOME": self.home, "XDG_DATA_HOME": self.home, **(env or {})}
        child, process = spawn_txcaddy(self, ["run", "--config", path], env=environ)
        yield child.wait_for("2 workers ready")
        self.child, self.process = child, process
        return child

    def pids(self, slot: int, what: str = "started") -> list[int]:
        return [int(p) for p in re.findall(rf"worker {slot} {what} \(pid (\d+)\)", self.child.text())]

    @inlineCallbacks
    def get(self) -> Any:
        response = yield treq.get(f"http://127.0.0.1:{self.port}/", persistent=False)
        body = yield response.content()
        return response.code, body

    @inlineCallbacks
    def hammer(self, concurrency: int, minimum: int, until: Deferred[Any] | None = None,
               at: tuple[int, Callable[[], Any]] | None = None) -> Any:
        """GET with ``concurrency`` requests at a time until ``minimum`` are done and ``until``
        has fired (bounded: at most 20 * minimum); ``at=(n, f)`` calls f as request n starts.
        Returns the bodies and the errors' type names."""
        bodies: list[bytes] = []
        errors: list[str] = []
        started = [0]

        def more() -> bool:
            if started[0] >= 20 * minimum:
                return False
            return started[0] < minimum or (until is not None and not until.called)

        @inlineCallbacks
        def lane() -> Any:
            while more():
                started[0] += 1
                if at is not None and started[0] == at[0]:
                    at[1]()
                try:
                    code, body = yield self.get()
                except Exception as e:  # noqa: BLE001 - counted
                    errors.append(type(e).__name__ + ": " + str(e))
                    continue
                if code != 200:
                    errors.append(f"status {code}")
                bodies.append(body)

        yield DeferredList([lane() for _ in range(concurrency)])
        return bodies, errors

    @inlineCallbacks
    def answered_by(self, wanted: set[bytes]) -> Any:
        """Fresh connections, 8 at a time, until every body in ``wanted`` has come back
        (bounded: 50 rounds); none may fail, and only those bodies may come."""
        seen: set[bytes] = set()
        for _ in range(50):
            bodies, errors = yield self.hammer(8, 16)
            self.assertEqual(errors, [])
            seen.update(bodies)
            if wanted <= seen:
                break
        self.assertEqual(seen, wanted)

    @inlineCallbacks
    def kill_under_load(self, slot: int) -> Any:
        """SIGKILL to worker ``slot`` as request 60 of a bounded loop (300, 10 at a time)
        starts: no connection is refused and at most the requests in flight fail; fires with
        (the killed pid, the restarted worker's pid) once the new one is ready."""
        (victim,) = self.pids(slot)
        concurrency = 10
        bodies, errors = yield self.hammer(concurrency, 300, at=(60, lambda: os.kill(victim, 9)))
        self.assertFalse([e for e in errors if "Refused" in e], errors)
        self.assertLessEqual(len(errors), concurrency, errors)
        self.assertGreaterEqual(len(bodies), 300 - concurrency)
        yield self.child.wait_for(f"worker {slot} restarted (pid")
        (fresh,) = self.pids(slot, "restarted")
        self.assertNotEqual(fresh, victim)
        yield self.child.wait_for(f"worker {slot} ready (pid {fresh})")
        return victim, fresh

    @inlineCallbacks
    def post_load(self, config: dict[str, Any]) -> Any:
        response = yield treq.post(f"http://127.0.0.1:{self.admin}/load", json.dumps(config).encode(),
                                   headers=Headers({"Content-Type": ["application/json"]}), persistent=False)
        body = yield response.content()
        return response.code, body



class WorkersTests(WorkersCase):

    @inlineCallbacks
    def test_requests_reach_every_worker_and_logs_reach_the_supervisor(self) -> Any:
        """Concurrent requests are served by both workers (``{env.TXCADDY_WORKER}`` is 1 and
        2), and their access log entries come out of the supervisor's log."""
        yield self.start(self.config(_static("worker {env.TXCADDY_WORKER}")))
        yield self.answered_by({b"worker 1", b"worker 2"})
        yield self.child.wait_for('"logger":"http.log.access')
        self.assertIn('"status":200', self.child.text())

    @inlineCallbacks
    def test_killed_worker_refuses_no_connection_and_is_restarted(self) -> Any:
        """SIGKILL to a worker under load: no connection is refused, at most the requests in
        flight fail, and the worker is started again and serves."""
        yield self.start(self.config(_static("worker {env.TXCADDY_WORKER}")))
        yield self.kill_under_load(1)
        yield self.answered_by({b"worker 1", b"worker 2"})

    @inlineCallbacks
    def test_rolling_reload_loses_no_request(self) -> Any:
        """``POST /load`` under load: new workers start, old ones drain, no request fails,
        and the new config answers afterwards."""
        yield self.start(self.config(_static("old")))
        before = self.pids(1) + self.pids(2)
        reloaded: Deferred[Any] = Deferred()

        def reload() -> None:
            self.post_load(self.config(_static("new"))).chainDeferred(reloaded)

        bodies, errors = yield self.hammer(8, 200, until=reloaded, at=(40, reload))
        code, body = yield reloaded
        self.assertEqual((code, errors), (200, []), body)
        self.assertIn(b"old", bodies)
        self.assertEqual((yield self.get()), (200, b"new"))
        yield self.child.wait_for("workers rolled to generation 2")
        after = self.pids(1) + self.pids(2)
        self.assertEqual((len(after), len(set(after) - set(before))), (4, 2))

    @inlineCallbacks
    def test_failed_reload_leaves_the_old_workers(self) -> Any:
        """A config that does not load answers 400; the same workers serve the old config."""
        yield self.start(self.config(_static("old")))
        bad = self.config([{"handle": [{"handler": "no_such_handler"}]}])
        code, body = yield self.post_load(bad)
        self.assertEqual(code, 400, body)
        bodies, errors = yield self.hammer(4, 20)
        self.assertEqual((set(bodies), errors), ({b"old"}, []))
        self.assertNotIn("workers rolled", self.child.text())
        self.assertEqual(len(self.pids(1) + self.pids(2)), 2)

    @inlineCallbacks
    def test_health_marks_reach_every_worker(self) -> Any:
        """The supervisor's active check marks an upstream down: both workers are told and no
        request goes there any more; only the supervisor probes."""
        reactor: Any = default_reactor()
        a, b = _Backend(b"a"), _Backend(b"b")
        ports = []
        for backend in (a, b):
            port = reactor.listenTCP(0, Site(backend), interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            ports.append(port.getHost().port)
        dial_a = f"127.0.0.1:{ports[0]}"
        proxy = [{"handle": [{
            "handler": "reverse_proxy",
            "upstreams": [{"dial": dial_a}, {"dial": f"127.0.0.1:{ports[1]}"}],
            "load_balancing": {"selection_policy": {"policy": "round_robin"}},
            "health_checks": {"active": {"uri": "/health", "interval": "100ms", "timeout": "2s"}},
        }]}]
        yield self.start(self.config(proxy))
        bodies, errors = yield self.hammer(4, 20)
        self.assertEqual(errors, [])
        self.assertIn(b"a", bodies)
        a.health = 503
        yield self.child.wait_for(f"[worker 1] upstream {dial_a} marked down")
        yield self.child.wait_for(f"[worker 2] upstream {dial_a} marked down")
        a.requests = 0
        bodies, errors = yield self.hammer(8, 40)
        self.assertEqual((set(bodies), errors, a.requests), ({b"b"}, [], 0))

    @inlineCallbacks
    def test_graceful_stop_finishes_requests_in_flight(self) -> Any:
        """SIGTERM to the supervisor: a proxied request in flight completes, the workers stop,
        and the supervisor exits 0."""
        reactor: Any = default_reactor()
        backend: Any = Factory.forProtocol(_Held)
        backend.held, backend.arrived = [], Deferred()
        upstream = reactor.listenTCP(0, backend, interface="127.0.0.1")
        self.addCleanup(upstream.stopListening)
        proxy = [{"handle": [{"handler": "reverse_proxy",
                              "upstreams": [{"dial": f"127.0.0.1:{upstream.getHost().port}"}]}]}]
        yield self.start(self.config(proxy))
        pending = self.get()
        yield backend.arrived
        self.process.signalProcess("TERM")
        yield self.child.wait_for("Closed)")  # the listeners close as the stop begins
        backend.held[0].answer(b"finished")
        self.assertEqual((yield pending), (200, b"finished"))
        status = yield self.child.ended
        self.assertEqual(status, 0, self.child.text())
        self.assertIn("workers stopped", self.child.text())

    @inlineCallbacks
    def test_systemd_ready_once_the_workers_are(self) -> Any:
        """``READY=1`` reaches ``$NOTIFY_SOCKET`` after both workers reported ready."""
        short = tempfile.mkdtemp(prefix="txw")  # a unix socket path must be short
        self.addCleanup(shutil.rmtree, short, True)
        path = os.path.join(short, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(30)  # a bounded wait for the datagram, not a sleep
        yield self.start(self.config(_static("ok")), env={"NOTIFY_SOCKET": path})
        messages = [sock.recv(4096)]
        while b"READY=1" not in messages[-1] and len(messages) < 5:
            messages.append(sock.recv(4096))
        self.assertEqual(messages[-1], b"READY=1")
        self.assertIn("2 workers ready", self.child.text())


def _https_get(port: int) -> tuple[bytes, list[str]]:
    """GET https://localhost:PORT/ (any certificate); the body and the certificate's DNS names."""
    import ssl

    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return data.partition(b"\r\n\r\n")[2], names


class WorkersHTTPSTests(WorkersCase):
    @inlineCallbacks
    def test_workers_serve_the_certificate_the_supervisor_obtained(self) -> Any:
        """With ``tls internal`` only the supervisor obtains the certificate; both workers
        serve it (loaded from storage, at start or when the supervisor says it was stored)."""
        from twisted.internet.threads import deferToThread

        from txcaddy.caddyfile.adapter import adapt
        from txcaddy.caddyfile.jsonenc import encode

        caddyfile = (
            f"{{\n\tadmin 127.0.0.1:{self.admin}\n\tworkers 2\n\tskip_install_trust\n"
            f"\tauto_https disable_redirects\n}}\n"
            f"https://localhost:{self.port} {{\n\ttls internal\n\trespond \"secure {{env.TXCADDY_WORKER}}\"\n}}\n"
        )
        config, _ = adapt(caddyfile, "Caddyfile")
        yield self.start(json.loads(encode(config)))
        yield self.child.wait_for("certificate obtained successfully for localhost")
        seen: set[bytes] = set()
        for _ in range(40):
            replies = yield DeferredList([deferToThread(_https_get, self.port) for _ in range(8)],
                                         fireOnOneErrback=True, consumeErrors=True)
            for _, (body, names) in replies:
                self.assertEqual(names, ["localhost"])
                seen.add(body)
            if len(seen) == 2:
                break
        self.assertEqual(seen, {b"secure 1", b"secure 2"})
        self.assertEqual(self.child.text().count("obtaining certificate for localhost"), 1, self.child.text())
