"""Python apps behind real sockets: a Flask app through ``wsgi``, klein and twisted.web through ``twisted_resource``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

import treq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseFailed

from tests.http.handlers import _pyapps
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.errors import ConfigError

APPS = "tests.http.handlers._pyapps"


class _Served(TestCase):
    timeout = 60

    def start(self, body: str) -> str:
        service = fromCaddyfile("http://127.0.0.1:0 {\n\tbind 127.0.0.1\n" + body + "}\n", reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        (address,) = next(iter(service.boundAddresses().values()))
        return f"http://127.0.0.1:{address.port}"

    @inlineCallbacks
    def fetch(self, method: str, url: str, **kwargs: Any) -> Any:
        response = yield treq.request(method, url, persistent=False, **kwargs)
        body = yield response.content()
        return response, body


class FlaskTests(_Served):
    def setUp(self) -> None:
        self.base = self.start(
            f"\thandle_path /app/* {{\n\t\twsgi {APPS}:flask_app() {{\n\t\t\tthreads 2\n\t\t}}\n\t}}\n"
            "\thandle_errors {\n\t\trespond \"error {http.error.status_code}\"\n\t}\n"
        )

    @inlineCallbacks
    def test_routing_under_handle_path(self) -> Any:
        """Flask routes under the stripped prefix; url_for and script_root include it."""
        response, body = yield self.fetch("GET", self.base + "/app/items/pen?q=1")
        self.assertEqual((response.code, json.loads(body)), (200, {"item": "pen", "q": "1"}))
        response, body = yield self.fetch("GET", self.base + "/app/")
        self.assertEqual(json.loads(body), {"url": "/app/items/x", "script": "/app", "path": "/"})

    @inlineCallbacks
    def test_streaming_response(self) -> Any:
        """A generator response streams to the client (no Content-Length), whole."""
        response, body = yield self.fetch("GET", self.base + "/app/stream")
        self.assertIsNone(response.headers.getRawHeaders("content-length"))  # no length: streamed
        self.assertEqual(body, b"".join(b"%04d\n" % i for i in range(20)))

    @inlineCallbacks
    def test_large_upload(self) -> Any:
        """An 8 MiB upload is streamed through wsgi.input and read whole by the app."""
        data = os.urandom(1024) * 8192
        response, body = yield self.fetch("POST", self.base + "/app/upload", data=data)
        self.assertEqual(json.loads(body), {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    @inlineCallbacks
    def test_app_error_goes_to_handle_errors(self) -> Any:
        """An exception in a view is the 500 Flask answers itself (nothing reaches txcaddy's log)."""
        response, body = yield self.fetch("GET", self.base + "/app/boom")
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)  # Flask answered it itself


class PoolExhaustionTests(_Served):
    @inlineCallbacks
    def test_full_pool_is_503(self) -> Any:
        """1 thread busy and no queue: the next request is a 503 through handle_errors; the first then finishes."""
        _pyapps.gate.clear()
        self.addCleanup(_pyapps.gate.set)
        _pyapps.seen["entered"] = 0
        base = self.start(
            f"\twsgi {APPS}:flask_app() {{\n\t\tthreads 1\n\t\tqueue 0\n\t}}\n"
            "\thandle_errors {\n\t\trespond \"error {http.error.status_code}\"\n\t}\n"
        )
        entered = _pyapps.reached["entered"] = Deferred()
        self.addCleanup(_pyapps.reached.clear)
        first = treq.get(base + "/wait", persistent=False)
        yield entered  # the first request holds the only thread
        response, body = yield self.fetch("GET", base + "/wait")
        self.assertEqual((response.code, body), (503, b"error 503"))
        _pyapps.gate.set()
        response = yield first
        self.assertEqual((yield response.content()), b"waited")


class PlainWSGITests(_Served):
    @inlineCallbacks
    def test_error_before_head_is_500_through_handle_errors(self) -> Any:
        """A pure WSGI app failing before start_response: 500 through handle_errors, error logged."""
        base = self.start(f"\twsgi {APPS}:fail_early\n\thandle_errors {{\n\t\trespond \"error {{http.error.status_code}}\"\n\t}}\n")
        response, body = yield self.fetch("GET", base + "/")
        self.assertEqual((response.code, body), (500, b"error 500"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @inlineCallbacks
    def test_error_after_head_cuts_the_response(self) -> Any:
        """A failure after the head was sent leaves the client an incomplete (aborted) response."""
        base = self.start(f"\twsgi {APPS}:fail_late\n")
        d = treq.get(base + "/", persistent=False)
        response = yield d
        self.assertEqual(response.code, 200)
        yield self.assertFailure(response.content(), ResponseFailed)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @inlineCallbacks
    def test_environ_over_tcp(self) -> Any:
        """The environ has the loopback addresses and the request's header fields."""
        base = self.start(f"\twsgi {APPS}:echo_environ\n")
        response, body = yield self.fetch("GET", base + "/p?x=1", headers={"X-Test": "t"})
        environ = json.loads(body)
        self.assertEqual((environ["PATH_INFO"], environ["QUERY_STRING"], environ["REMOTE_ADDR"], environ["HTTP_X_TEST"],
                          environ["wsgi.url_scheme"]), ("/p", "x=1", "127.0.0.1", "t", "http"))

    @inlineCallbacks
    def test_client_disconnect_stops_the_app(self) -> Any:
        """A client that leaves mid-stream: the app stops before its last chunk and close() is called."""
        base = self.start(f"\twsgi {APPS}:stream\n")
        port = int(base.rsplit(":", 1)[1])
        _pyapps.seen.pop("closed", None)
        _pyapps.seen.pop("sent", None)
        sent = _pyapps.reached["sent"] = Deferred()
        closed = _pyapps.reached["closed"] = Deferred()
        self.addCleanup(_pyapps.reached.clear)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            yield sent  # the app has produced something
            # closed without reading
        yield closed  # the disconnect stopped the app, which closed its iterable
        self.assertTrue(_pyapps.seen["closed"])
        self.assertLess(_pyapps.seen["sent"], 50)

    def test_import_error_is_config_error(self) -> None:
        """A module that cannot be imported fails the config load, naming the module."""
        with self.assertRaises(ConfigError) as e:
            fromCaddyfile("http://127.0.0.1:0 {\n\twsgi no_such_wsgi_mod:app\n}\n", reactor=default_reactor())
        self.assertIn("no_such_wsgi_mod", str(e.exception))


class TwistedResourceTests(_Served):
    @inlineCallbacks
    def test_klein_and_resource(self) -> Any:
        """A klein app under handle_path and a plain twisted.web resource tree answer over TCP."""
        base = self.start(
            f"\thandle_path /k/* {{\n\t\ttwisted_resource {APPS}:klein_app()\n\t}}\n"
            f"\ttwisted_resource {APPS}:web_root\n"
        )
        response, body = yield self.fetch("GET", base + "/k/user/zoe")
        self.assertEqual((response.code, json.loads(body)), (200, {"name": "zoe", "prepath": ["k", "user", "zoe"]}))
        response, body = yield self.fetch("GET", base + "/hello?name=al")
        self.assertEqual((response.code, body), (200, b"hello al"))
        response, body = yield self.fetch("GET", base + "/later/a/b")
        self.assertEqual(body, b"later:later|a/b")
        response, body = yield self.fetch("GET", base + "/file")
        with open(_pyapps.__file__, "rb") as f:
            self.assertEqual((response.code, body), (200, f.read()))  # static.File through its producer
        response, body = yield self.fetch("POST", base + "/hello", data=b"x" * 100000)
        self.assertEqual(body, b"posted " + b"x" * 100000)

    @inlineCallbacks
    def test_render_error(self) -> Any:
        """A resource that raises is a 500, logged."""
        base = self.start(f"\ttwisted_resource {APPS}:web_root\n")
        response, body = yield self.fetch("GET", base + "/broken")
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
