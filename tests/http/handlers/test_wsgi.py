"""The ``wsgi`` handler: environ, threads, streaming both ways, errors, pool limits."""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.http.handlers import _pyapps
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.wsgi import (
    INPUT_BUFFER,
    ClientDisconnected,
    WSGIHandler,
    build_environ,
    load_wsgi,
)
from txcaddy.http.request import Request, RequestBody
from txcaddy.testing import FakeResponse, FakeTLS, make_request

APPS = "tests.http.handlers._pyapps"


class _Producer:
    """Records what the handler does to the client connection's reading."""

    def __init__(self) -> None:
        self.events: list[str] = []
        #: Fires when the handler resumes reading (the app read below the buffer's limit).
        self.resumed: Deferred[None] = Deferred()

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")
        if not self.resumed.called:
            self.resumed.callback(None)


class _PausingResponse(FakeResponse):
    """A client that takes nothing: the producer is paused as soon as it is registered."""

    def __init__(self) -> None:
        super().__init__()
        #: Fires (on the reactor thread, inside the handler's hand-off) when the first chunk is written.
        self.first_chunk: Deferred[None] = Deferred()

    def register_producer(self, producer: Any, streaming: bool) -> None:
        super().register_producer(producer, streaming)
        producer.pauseProducing()

    def write(self, data: bytes) -> None:
        super().write(data)
        if not self.first_chunk.called:
            self.first_chunk.callback(None)


class EnvironTests(SynchronousTestCase):
    def test_cgi_fields(self) -> None:
        """Method, query, server and client addresses, content fields and HTTP_* headers are set."""
        request = make_request("POST", "/a%20b/c?x=1", headers={"Host": "example.com:8443", "Content-Type": "text/plain",
                                                              "Content-Length": "0", "X-Test": "yes", "X_Bad": "no"},
                               remote=("10.0.0.1", 4000))
        environ = build_environ(request, "", None, None)
        self.assertEqual(
            {k: environ[k] for k in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                                     "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "CONTENT_TYPE", "CONTENT_LENGTH",
                                     "HTTP_X_TEST", "HTTP_HOST", "wsgi.url_scheme")},
            {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/a b/c", "QUERY_STRING": "x=1",
             "SERVER_NAME": "example.com", "SERVER_PORT": "8443", "REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "4000",
             "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "0", "HTTP_X_TEST": "yes", "HTTP_HOST": "example.com:8443",
             "wsgi.url_scheme": "http"})
        self.assertNotIn("HTTP_X_BAD", environ)  # underscores would be ambiguous with dashes
        self.assertNotIn("HTTP_CONTENT_TYPE", environ)
        self.assertNotIn("HTTPS", environ)

    def test_tls(self) -> None:
        """Over TLS the scheme is https and HTTPS is on; a Host without port gives 443."""
        environ = build_environ(make_request("GET", "/", tls=FakeTLS("example.com"), host="example.com"), "", None, None)
        self.assertEqual((environ["wsgi.url_scheme"], environ["HTTPS"], environ["SERVER_PORT"]), ("https", "on", "443"))

    def test_utf8_path_is_latin1_bytes(self) -> None:
        """PATH_INFO carries the path's bytes one latin-1 character each (PEP 3333)."""
        environ = build_environ(make_request("GET", "/%C3%A9"), "", None, None)
        self.assertEqual(environ["PATH_INFO"], "/\xc3\xa9")

    def test_stripped_prefix_is_script_name(self) -> None:
        """After handle_path stripped /app, SCRIPT_NAME is /app and PATH_INFO the rest."""
        request = make_request("GET", "/app/items/1")
        request.set_path("/items/1")
        environ = build_environ(request, "", None, None)
        self.assertEqual((environ["SCRIPT_NAME"], environ["PATH_INFO"]), ("/app", "/items/1"))

    def test_root_path(self) -> None:
        """root_path is SCRIPT_NAME, taken off PATH_INFO when the path still has it."""
        environ = build_environ(make_request("GET", "/app/items"), "/app", None, None)
        self.assertEqual((environ["SCRIPT_NAME"], environ["PATH_INFO"]), ("/app", "/items"))
        environ = build_environ(make_request("GET", "/items"), "/app/", None, None)
        self.assertEqual((environ["SCRIPT_NAME"], environ["PATH_INFO"]), ("/app", "/items"))


class LoadTests(SynchronousTestCase):
    def load(self, config: dict[str, Any]) -> tuple[WSGIHandler, LoadContext]:
        context = LoadContext(reactor=reactor)
        return load_wsgi(config, context), context

    def test_import(self) -> None:
        """module:name and module:factory() name the app; the pool starts as a service and stops on unload."""
        handler, context = self.load({"app": f"{APPS}:echo_environ", "threads": 3, "root_path": "/p"})
        self.assertIs(handler.app, _pyapps.echo_environ)
        self.assertEqual((handler.pool.threads, handler.root_path), (3, "/p"))
        (service,) = context.services
        self.assertFalse(handler.pool.pool.started)
        service.startService()
        self.assertTrue(handler.pool.pool.started)
        service.stopService()
        self.assertTrue(handler.pool.pool.started)  # still serving while the old config drains
        handler2, _ = self.load({"app": f"{APPS}:make_app()"})
        self.assertIs(handler2.app, _pyapps.echo_environ)
        self.successResultOf(context.unload())
        self.assertTrue(handler.pool.stopped)
        self.assertFalse(handler.pool.pool.started)

    def test_import_errors(self) -> None:
        """A missing module or attribute, or a spec without a colon, is a ConfigError naming it."""
        with self.assertRaises(ConfigError) as e:
            self.load({"app": "no_such_module_xyz:app"})
        self.assertIn("no_such_module_xyz", str(e.exception))
        with self.assertRaises(ConfigError) as e:
            self.load({"app": f"{APPS}:nope"})
        self.assertIn("nope", str(e.exception))
        self.assertRaises(ConfigError, self.load, {"app": APPS})
        self.assertRaises(ConfigError, self.load, {"app": f"{APPS}:echo_environ", "threads": 0})


class HandlerTests(TestCase):
    """The handler with a real thread pool on the running reactor."""

    timeout = 20

    def handler(self, app: str, **kwargs: Any) -> WSGIHandler:
        handler = WSGIHandler(getattr(_pyapps, app), reactor, name=app, **kwargs)
        self.addCleanup(handler.pool.stop)
        return handler

    @inlineCallbacks
    def test_answers(self) -> Any:
        """The app's status, header fields and body reach the response, which is finished."""
        response = FakeResponse()
        yield self.handler("write_callable").serve(make_request(), response, None)
        self.assertEqual((response.status, response.headers.get("Content-Type"), response.body, response.ended),
                         (201, "text/plain", b"one,two,three", True))

    @inlineCallbacks
    def test_exc_info_replaces_the_head(self) -> Any:
        """start_response with exc_info before anything was sent replaces status and fields."""
        response = FakeResponse()
        yield self.handler("error_page").serve(make_request(), response, None)
        self.assertEqual((response.status, response.headers.get("X-First"), response.headers.get("X-Second"),
                          response.body), (503, None, "1", b"sorry"))

    @inlineCallbacks
    def test_error_before_head(self) -> Any:
        """An exception before anything was sent is a 500 HandlerError, logged; nothing is written."""
        response = FakeResponse()
        with self.assertRaises(HandlerError) as e:
            yield self.handler("fail_early").serve(make_request(), response, None)
        self.assertEqual(e.exception.status, 500)
        self.assertIsInstance(e.exception.cause, ZeroDivisionError)
        self.assertFalse(response.head_sent)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @inlineCallbacks
    def test_no_start_response(self) -> Any:
        """An app that never calls start_response is a 500."""
        with self.assertRaises(HandlerError) as e:
            yield self.handler("no_start").serve(make_request(), FakeResponse(), None)
        self.assertEqual(e.exception.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(AssertionError)), 1)

    @inlineCallbacks
    def test_error_after_head(self) -> Any:
        """An exception after the head was sent fails the handler with the head already out (the server aborts)."""
        response = FakeResponse()
        with self.assertRaises(HandlerError):
            yield self.handler("fail_late").serve(make_request(), response, None)
        self.assertEqual((response.status, response.body, response.ended), (200, b"partial", False))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @inlineCallbacks
    def test_body_past_content_length_is_cut(self) -> Any:
        """Bytes past the app's own Content-Length are not sent (they would frame the next
        response on a keep-alive connection), and its iterable is not read further."""
        response = FakeResponse()
        yield self.handler("long_content_length").serve(make_request(), response, None)
        self.assertEqual((response.body, response.ended, response.headers.get("Content-Length")),
                         (b"hel", True, "3"))
        self.assertEqual(_pyapps.seen["long_yields"], 2)

    @inlineCallbacks
    def test_body_short_of_content_length_fails(self) -> Any:
        """A body shorter than the app's Content-Length is not finished as if complete: the
        handler fails after the head (the server cuts the connection)."""
        response = FakeResponse()
        with self.assertRaises(HandlerError) as e:
            yield self.handler("short_content_length").serve(make_request(), response, None)
        self.assertIn("Content-Length", str(e.exception))
        self.assertEqual((response.body, response.ended), (b"hello", False))
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_head_request_with_content_length_is_complete(self) -> Any:
        """A HEAD answer declaring a Content-Length with a body that never goes out finishes normally."""
        response = FakeResponse()
        yield self.handler("short_content_length").serve(make_request("HEAD", "/"), response, None)
        self.assertTrue(response.ended)

    @inlineCallbacks
    def test_bad_content_length_is_a_500(self) -> Any:
        """A Content-Length that is no number is the app's error: a 500, nothing sent."""
        response = FakeResponse()
        with self.assertRaises(HandlerError) as e:
            yield self.handler("bad_content_length").serve(make_request(), response, None)
        self.assertEqual(e.exception.status, 500)
        self.assertFalse(response.head_sent)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    @inlineCallbacks
    def test_pool_exhaustion(self) -> Any:
        """With 1 thread and a queue of 1, a third request is a 503 at once; the others then finish."""
        _pyapps.gate.clear()
        self.addCleanup(_pyapps.gate.set)
        handler = self.handler("blocking", threads=1, queue=1)
        first, second = FakeResponse(), FakeResponse()
        d1 = handler.serve(make_request(), first, None)
        d2 = handler.serve(make_request(), second, None)
        with self.assertRaises(HandlerError) as e:
            handler.serve(make_request(), FakeResponse(), None)
        self.assertEqual(e.exception.status, 503)
        self.assertEqual((handler.pool.running, len(handler.pool.waiting)), (1, 1))
        _pyapps.gate.set()
        yield d1
        yield d2
        self.assertEqual((first.body, second.body, handler.pool.running), (b"ok", b"ok", 0))

    @inlineCallbacks
    def test_stopped_pool(self) -> Any:
        """Once the config is unloaded the handler answers 503."""
        handler = self.handler("echo_environ")
        handler.pool.stop()
        with self.assertRaises(HandlerError) as e:
            handler.serve(make_request(), FakeResponse(), None)
        self.assertEqual(e.exception.status, 503)
        yield None

    @inlineCallbacks
    def test_request_body_backpressure(self) -> Any:
        """wsgi.input keeps a bounded buffer: the client is paused past it and resumed as the app reads."""
        producer = _Producer()
        taken: Deferred[None] = Deferred()  # the app's first read hands the body to wsgi.input
        body = RequestBody(None, on_drain=lambda: taken.callback(None), producer=producer)
        request = Request("POST", "/", make_request().headers, body=body)
        response = FakeResponse()
        d = self.handler("digest_body").serve(request, response, None)
        # nothing is taken before the app reads; then a large piece pauses the client
        yield taken
        data = b"x" * (INPUT_BUFFER * 4)
        body.feed(data)
        self.assertEqual(producer.events, ["pause"])
        yield producer.resumed  # the app thread read it down below the limit
        self.assertEqual(producer.events, ["pause", "resume"])
        body.feed(b"yz")
        body.finish()
        yield d
        import hashlib

        self.assertEqual(response.body, b"%d %s" % (len(data) + 2, hashlib.sha256(data + b"yz").hexdigest().encode()))

    @inlineCallbacks
    def test_readline_and_iteration(self) -> Any:
        """readline and iterating wsgi.input give the body's lines."""
        response = FakeResponse()
        yield self.handler("read_lines").serve(make_request("POST", "/", body=b"a\nbb\nccc"), response, None)
        self.assertEqual(response.body, b"3|a\n|bb\nccc")

    @inlineCallbacks
    def test_response_backpressure_and_disconnect(self) -> Any:
        """A paused client blocks the app's thread; a client that goes away stops it and close() is called."""
        response = _PausingResponse()
        handler = self.handler("stream")
        d = handler.serve(make_request(), response, None)
        yield response.first_chunk
        # The write ran inside the app thread's blockingCallFromThread: one reactor turn (no time)
        # lets that call return to the app thread, which must then wait while the client is paused.
        yield deferLater(reactor, 0, lambda: None)
        self.assertFalse(response.finished)
        self.assertEqual(len(response.chunks), 1)
        response.connection_lost(ClientDisconnected("gone"))
        yield d
        # It never got past the first chunk: its write waited, and the disconnect failed it
        # (an app let on would have made its second chunk before finding the client gone).
        self.assertEqual((_pyapps.seen["sent"], len(response.chunks)), (1, 1))
        self.assertTrue(_pyapps.seen["closed"])
        self.assertFalse(response.ended)

    @inlineCallbacks
    def test_streams_all_chunks(self) -> Any:
        """Unpaused, every chunk the iterable yields is written, then the response ends."""
        response = FakeResponse()
        yield self.handler("stream").serve(make_request(), response, None)
        self.assertEqual((len(response.body), response.ended, _pyapps.seen["closed"]), (50 * 65536, True, True))

    @inlineCallbacks
    def test_runs_in_a_pool_thread(self) -> Any:
        """The app runs outside the reactor thread."""
        names: list[str] = []

        def app(environ: Any, start_response: Any) -> list[bytes]:
            names.append(threading.current_thread().name)
            start_response("204 No Content", [])
            return []

        handler = WSGIHandler(app, reactor, name="named")
        self.addCleanup(handler.pool.stop)
        response = FakeResponse()
        yield handler.serve(make_request(), response, None)
        self.assertEqual(response.status, 204)
        self.assertNotEqual(names, [threading.current_thread().name])
        self.assertIn("wsgi:named", names[0])
