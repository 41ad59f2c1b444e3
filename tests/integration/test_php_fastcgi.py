"""``php_fastcgi`` and ``transport fastcgi`` end to end: txcaddy from a Caddyfile in front of
a real php-fpm (Debian's ``php8.2-fpm``) on loopback TCP and on a unix socket."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
from typing import Any

import treq
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols import portforward
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import provider

from tests._net import listen_local, port_number
from tests.reverseproxy._backends import site, start_proxy
from tests.reverseproxy._phpfpm import PHPFPM, _Watcher
from txcaddy._reactor import default_reactor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _observe(test: TestCase) -> list[LogEvent]:
    """Collect the log events emitted during ``test``."""
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observer(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class PHPTestCase(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.fpm = PHPFPM(self.mktemp())
        self.addCleanup(self.fpm.stop)
        await self.fpm.start()

    def proxy(self, directives: str) -> str:
        return start_proxy(self, site(f"\troot * {self.fpm.root}\n" + directives))

    @inlineCallbacks
    def get(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        response = yield treq.request(method, url, persistent=False, allow_redirects=False,
                                      **kwargs)
        body = yield response.content()
        return response, body


class PHPFastCGITests(PHPTestCase):
    @inlineCallbacks
    def test_script_over_tcp_and_unix(self) -> Any:
        """A .php script runs through both pools; its headers and body come back."""
        for dial in (self.fpm.tcp_dial, self.fpm.unix_dial):
            base = self.proxy(f"\tphp_fastcgi {dial}")
            response, body = yield self.get(base + "/index.php?x=1")
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers.getRawHeaders("X-Script"), ["index"])
            self.assertEqual(body, b"index REQUEST_URI=/index.php?x=1 SCRIPT_NAME=/index.php")

    @inlineCallbacks
    def test_pretty_url_falls_back_to_index(self) -> Any:
        """A path with no file runs index.php, which sees the original REQUEST_URI."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        response, body = yield self.get(base + "/blog/2024/hello?page=2")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"index REQUEST_URI=/blog/2024/hello?page=2 SCRIPT_NAME=/index.php")

    @inlineCallbacks
    def test_directory_redirect_and_index(self) -> Any:
        """A directory without its slash is redirected; with it, its index.php runs."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        response, _ = yield self.get(base + "/sub")
        self.assertEqual(response.code, 308)
        self.assertEqual(response.headers.getRawHeaders("Location"), ["/sub/"])
        response, body = yield self.get(base + "/sub/")
        self.assertEqual(body, b"sub index /sub/index.php")

    @inlineCallbacks
    def test_environment(self) -> Any:
        """The CGI variables Caddy sets: script paths, PATH_INFO, REQUEST_URI, SERVER_*, REMOTE_*, HTTP_*."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial} {{\n\t\tenv APP_MODE testing\n\t}}")
        port = base.rsplit(":", 1)[1]
        response, body = yield self.get(base + "/env.php/extra/info?a=b%20c",
                                        headers={"X-Custom-Thing": ["one", "two"]})
        server = json.loads(body)["server"]
        root = os.path.realpath(self.fpm.root)
        expected = {
            "SCRIPT_FILENAME": root + "/env.php",
            "SCRIPT_NAME": "/env.php",
            "PATH_INFO": "/extra/info",
            "PATH_TRANSLATED": root + "/extra/info",
            "DOCUMENT_ROOT": root,
            "DOCUMENT_URI": "/env.php",
            "REQUEST_URI": "/env.php/extra/info?a=b%20c",
            "QUERY_STRING": "a=b%20c",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": port,
            "HTTP_HOST": f"127.0.0.1:{port}",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_X_CUSTOM_THING": "one, two",
            "HTTP_X_FORWARDED_FOR": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "http",
            "APP_MODE": "testing",
            "CONTENT_LENGTH": "0",
        }
        self.assertEqual({k: server.get(k) for k in expected}, expected)
        self.assertTrue(server["REMOTE_PORT"].isdigit())
        self.assertNotIn("HTTPS", server)

    @inlineCallbacks
    def test_resolve_root_symlink(self) -> Any:
        """With resolve_root_symlink, DOCUMENT_ROOT and SCRIPT_FILENAME are the real directory."""
        link = os.path.abspath(self.mktemp())
        os.symlink(self.fpm.root, link)
        for option, expected in (("", link), ("\t\tresolve_root_symlink\n", self.fpm.root)):
            base = start_proxy(self, site(f"\troot * {link}\n\tphp_fastcgi {self.fpm.tcp_dial} {{\n"
                                          f"{option}\t}}"))
            _, body = yield self.get(base + "/env.php")
            server = json.loads(body)["server"]
            self.assertEqual((server["DOCUMENT_ROOT"], server["SCRIPT_FILENAME"]),
                             (expected, expected + "/env.php"))

    @inlineCallbacks
    def test_post_form(self) -> Any:
        """A form POST reaches $_POST with its content type."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.unix_dial}")
        response, body = yield self.get(
            base + "/env.php", method="POST", data=b"name=caddy&n=2",
            headers={"Content-Type": ["application/x-www-form-urlencoded"]})
        data = json.loads(body)
        self.assertEqual(data["post"], {"name": "caddy", "n": "2"})
        self.assertEqual(data["server"]["CONTENT_LENGTH"], "14")

    @inlineCallbacks
    def test_upload_50_mb(self) -> Any:
        """A 50 MB request body streams through to PHP intact (length and SHA-256)."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
        payload = block * 800  # 50 MiB
        response, body = yield self.get(
            base + "/upload.php", method="PUT", data=payload,
            headers={"Content-Type": ["application/octet-stream"]})
        self.assertEqual(response.code, 200)
        self.assertEqual(body.decode(), f"{len(payload)} {hashlib.sha256(payload).hexdigest()}")

    @inlineCallbacks
    def test_chunked_upload(self) -> Any:
        """A chunked request body reaches PHP whole, with its length (Caddy 2.6.2 hangs here)."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.unix_dial}")
        payload = b"0123456789abcdef" * 20000
        producer = FileBodyProducer(io.BytesIO(payload))
        producer.length = UNKNOWN_LENGTH
        response, body = yield self.get(base + "/upload.php", method="POST", data=producer)
        self.assertEqual(response.code, 200)
        self.assertEqual(body.decode(), f"{len(payload)} {hashlib.sha256(payload).hexdigest()}")

    @inlineCallbacks
    def test_slow_script_streams(self) -> Any:
        """The first chunk of a script still running reaches the client before the script ends."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        response = yield treq.get(base + "/stream.php", persistent=False)
        self.assertEqual(response.code, 200)
        seen: list[bytes] = []
        first: Deferred[None] = Deferred()

        def on_chunk(data: bytes) -> None:
            seen.append(data)
            if b"first\n" in b"".join(seen) and not first.called:
                first.callback(None)

        done = treq.collect(response, on_chunk)
        yield first
        # The script waits for this file: it is still running while we hold its first chunk.
        self.assertNotIn(b"second", b"".join(seen))
        with open(os.path.join(self.fpm.root, "go"), "w"):
            pass
        yield done
        self.assertEqual(b"".join(seen), b"first\nsecond\n")

    @inlineCallbacks
    def test_php_500_and_stderr_logged(self) -> Any:
        """A script's 500 is relayed with its body; what it wrote to stderr is logged."""
        events = _observe(self)
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial} {{\n\t\tcapture_stderr\n\t}}")
        response, body = yield self.get(base + "/fail.php")
        self.assertEqual(response.code, 500)
        self.assertEqual(body, b"it failed")
        # as Caddy 2.6.2, the CGI Status field is passed on too
        self.assertEqual(response.headers.getRawHeaders("Status"), ["500 Internal Server Error"])
        logged = [e for e in events if "boom from php" in str(e.get("stderr", ""))]
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["log_level"].name, "error")

    @inlineCallbacks
    def test_head_request(self) -> Any:
        """HEAD runs the script for its headers; no body comes back."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.unix_dial}")
        response, body = yield self.get(base + "/index.php", method="HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(response.headers.getRawHeaders("X-Script"), ["index"])
        # the kept connection serves the next request
        response, body = yield self.get(base + "/index.php")
        self.assertTrue(body.startswith(b"index "))

    @inlineCallbacks
    def test_unix_socket_down(self) -> Any:
        """A unix socket nobody listens on: 502."""
        base = self.proxy(f"\tphp_fastcgi unix/{self.fpm.socket_dir}/missing.sock")
        response, _ = yield self.get(base + "/index.php")
        self.assertEqual(response.code, 502)

    @inlineCallbacks
    def test_redirect_from_php(self) -> Any:
        """A Location header from PHP becomes a 302 (PHP sets the Status)."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        response, _ = yield self.get(base + "/redirect.php")
        self.assertEqual(response.code, 302)
        self.assertEqual(response.headers.getRawHeaders("Location"), ["/elsewhere"])

    @inlineCallbacks
    def test_static_files_are_not_php(self) -> Any:
        """With a file_server after php_fastcgi, a non-.php file is served as a file."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}\n\tfile_server")
        response, body = yield self.get(base + "/static.txt")
        self.assertEqual((response.code, body), (200, b"plain text file\n"))

    @inlineCallbacks
    def test_keep_alive_reuses_the_connection(self) -> Any:
        """Sequential requests run over one kept FastCGI connection (FCGI_KEEP_CONN).

        A counting TCP relay between txcaddy and php-fpm sees the connections.
        """
        accepted: list[object] = []

        class Counting(portforward.ProxyFactory):
            def buildProtocol(self, addr: Any) -> Any:
                accepted.append(addr)
                return super().buildProtocol(addr)

        relay = listen_local(Counting("127.0.0.1", self.fpm.port))
        self.addCleanup(relay.stopListening)
        base = self.proxy(f"\tphp_fastcgi 127.0.0.1:{port_number(relay)}")
        for n in range(5):
            _, body = yield self.get(base + f"/index.php?n={n}")
            self.assertEqual(body, f"index REQUEST_URI=/index.php?n={n} SCRIPT_NAME=/index.php".encode())
        self.assertEqual(len(accepted), 1)


class HealthCheckTests(PHPTestCase):
    @inlineCallbacks
    def test_active_health_check_through_fastcgi(self) -> Any:
        """Active health checks run a script through php-fpm: a 500 from it takes the upstream down (503)."""
        base = self.proxy(
            f"\treverse_proxy {self.fpm.tcp_dial} {{\n\t\ttransport fastcgi {{\n"
            f"\t\t\tsplit .php\n\t\t\troot {self.fpm.root}\n\t\t\tcapture_stderr\n\t\t}}\n"
            "\t\thealth_uri /fail.php\n\t\thealth_interval 50ms\n\t}")
        events = _observe(self)
        down: Deferred[None] = Deferred()

        @provider(ILogObserver)
        def on_down(event: LogEvent) -> None:
            if event.get("log_format", "").startswith("host is down") and not down.called:
                down.callback(None)

        globalLogPublisher.addObserver(on_down)
        self.addCleanup(globalLogPublisher.removeObserver, on_down)
        yield down
        response, _ = yield self.get(base + "/index.php")
        self.assertEqual(response.code, 503)
        # the check ran fail.php in php-fpm: its stderr was logged
        self.assertTrue(any("boom from php" in str(e.get("stderr", "")) for e in events))


class WorkerTests(PHPTestCase):
    @inlineCallbacks
    def test_more_requests_than_workers(self) -> Any:
        """Eight concurrent requests to a pool of two php-fpm workers all complete."""
        base = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial}")
        results = yield DeferredList([self.get(base + f"/index.php?n={n}") for n in range(8)],
                                     consumeErrors=True)
        bodies = sorted(result[1][1] for result in results if result[0])
        self.assertEqual(bodies, sorted(
            f"index REQUEST_URI=/index.php?n={n} SCRIPT_NAME=/index.php".encode() for n in range(8)))

    @inlineCallbacks
    def test_three_transports_two_workers(self) -> Any:
        """Three php_fastcgi handlers keeping connections to two workers never starve each other."""
        dial = self.fpm.tcp_dial
        base = self.proxy("".join(f"\thandle /{name}/* {{\n\t\tphp_fastcgi {dial}\n\t}}\n"
                                  for name in "abc"))
        for _ in range(2):
            for name in "abc":
                _, body = yield self.get(base + f"/{name}/page")
                self.assertEqual(body, f"index REQUEST_URI=/{name}/page SCRIPT_NAME=/index.php".encode())


class FastCGIFailureTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_fpm_down_is_502(self) -> Any:
        """Nothing listening at the FastCGI address: 502."""
        base = start_proxy(self, site(f"\troot * {self.mktemp()}\n"
                                      f"\treverse_proxy 127.0.0.1:{_free_port()} {{\n"
                                      "\t\ttransport fastcgi\n\t}"))
        response = yield treq.get(base + "/x.php", persistent=False)
        yield response.content()
        self.assertEqual(response.code, 502)

    @inlineCallbacks
    def test_garbage_is_502_logged_and_serving_goes_on(self) -> Any:
        """A server answering non-FastCGI bytes gives a clean 502, is logged, and the proxy keeps serving."""
        events = _observe(self)

        class Garbage(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 200 OK\r\n\r\nnot fastcgi at all")

        port = listen_local(Factory.forProtocol(Garbage))
        self.addCleanup(port.stopListening)
        base = start_proxy(self, site(
            f"\treverse_proxy 127.0.0.1:{port_number(port)} {{\n\t\ttransport fastcgi\n\t}}\n"))
        for _ in range(2):
            response = yield treq.get(base + "/x.php", persistent=False)
            yield response.content()
            self.assertEqual(response.code, 502)
        logged = [e for e in events if "invalid response" in e.get("log_format", "")]
        self.assertEqual(len(logged), 2)


class MatchesCaddyTests(PHPTestCase):
    timeout = 60
    maxDiff = None

    @inlineCallbacks
    def start_caddy(self, caddyfile: str) -> Any:
        """Run Debian's caddy 2.6.2 with ``caddyfile`` (admin off); stop it by PID afterwards."""
        caddy = shutil.which("caddy")
        if caddy is None:
            raise SkipTest("caddy is not installed (apt-get install caddy)")
        path = os.path.join(self.mktemp() + "-caddy")
        os.makedirs(path)
        with open(os.path.join(path, "Caddyfile"), "w") as f:
            f.write(caddyfile)
        watcher = _Watcher()
        reactor: Any = default_reactor()
        process = reactor.spawnProcess(
            watcher, caddy, [caddy, "run", "--config", "Caddyfile", "--adapter", "caddyfile"],
            env=dict(os.environ, HOME=path, XDG_DATA_HOME=path, XDG_CONFIG_HOME=path), path=path)

        def stop() -> Deferred[None]:
            os.kill(process.pid, signal.SIGTERM)
            return watcher.ended

        self.addCleanup(stop)
        port = int(caddyfile.split("http://127.0.0.1:", 1)[1].split(" ", 1)[0])
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return f"http://127.0.0.1:{port}"
            except OSError:
                yield deferLater(reactor, 0.05, lambda: None)
        raise RuntimeError(f"caddy did not start: {watcher.output!r}")

    @inlineCallbacks
    def test_environment_matches_caddy(self) -> Any:
        """For the same requests, PHP sees the same $_SERVER through txcaddy as through Caddy 2.6.2."""
        directives = (f"\troot * {self.fpm.root}\n\tphp_fastcgi {self.fpm.tcp_dial} {{\n"
                      "\t\tenv APP_METHOD {http.request.method}\n\t}\n")
        caddy_port = _free_port()
        caddy = yield self.start_caddy(
            f"{{\n\tadmin off\n}}\nhttp://127.0.0.1:{caddy_port} {{\n{directives}}}\n")
        ours = self.proxy(f"\tphp_fastcgi {self.fpm.tcp_dial} {{\n"
                          "\t\tenv APP_METHOD {http.request.method}\n\t}")
        requests = [
            ("GET", "/env.php/extra/info?q=1%202&r", None, {}),
            ("GET", "/no/such/page?x=y&dump=1", None, {"X-Multi": ["a", "b"]}),
            ("OPTIONS", "/?dump=1", None, {}),
            ("POST", "/env.php", b"a=1&b=2", {"Content-Type": ["application/x-www-form-urlencoded"]}),
            ("DELETE", "/env.php?id=3", None, {"Cookie": ["k=v"]}),
        ]
        inherited = set(os.environ)
        for method, path, data, headers in requests:
            seen = []
            for base in (caddy, ours):
                _, body = yield self.get(base + path, method=method, data=data,
                                         headers=dict(headers, **{"User-Agent": ["same"]}))
                server = json.loads(body)["server"]
                port = base.rsplit(":", 1)[1]
                seen.append({k: v.replace(port, "PORT") if isinstance(v, str) else v
                             for k, v in server.items()
                             if k not in inherited and k not in ("REMOTE_PORT",)})
            self.assertEqual(seen[1], seen[0], f"{method} {path}")
