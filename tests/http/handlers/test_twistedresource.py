"""The ``twisted_resource`` handler: twisted.web resources rendered through txcaddy's request/response."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from tests.http.handlers import _pyapps
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.twistedresource import TwistedResourceHandler, load_twisted_resource
from txcaddy.testing import FakeResponse, make_request, serve

APPS = "tests.http.handlers._pyapps"


class SynchronousRenderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.handler = TwistedResourceHandler(_pyapps.web_root())

    def test_render_get(self) -> None:
        """render_GET's bytes, its header fields and cookies reach the response, not chunk-coded."""
        response = serve(self.handler, make_request("GET", "/hello?name=bob"))
        self.assertEqual((response.status, response.body), (200, b"hello bob"))
        self.assertEqual(response.headers.get("Content-Type"), "text/plain")
        self.assertEqual(response.headers.get("Set-Cookie"), "k=v")
        self.assertIsNone(response.headers.get("Transfer-Encoding"))

    def test_post_body(self) -> None:
        """The request body is the resource's request.content."""
        response = serve(self.handler, make_request("POST", "/hello", body=b"payload"))
        self.assertEqual(response.body, b"posted payload")

    def test_static_data_and_404(self) -> None:
        """A static Data resource answers with its Content-Length; an unknown child is twisted.web's 404."""
        response = serve(self.handler, make_request("GET", "/data"))
        self.assertEqual((response.status, response.body, response.headers.get("Content-Length")),
                         (200, b"static data", "11"))
        self.assertEqual(serve(self.handler, make_request("GET", "/nothing")).status, 404)

    def test_render_error(self) -> None:
        """An exception in render is a 500 HandlerError (logged); nothing was written."""
        response = FakeResponse()
        with self.assertRaises(HandlerError) as e:
            serve(self.handler, make_request("GET", "/broken"), response)
        self.assertEqual(e.exception.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_malformed_form_body(self) -> None:
        """A multipart body twisted.web cannot parse is a 400 HandlerError, the connection left alone."""
        request = make_request("POST", "/hello", headers={"Content-Type": "multipart/form-data; boundary=zz"},
                               body=b"not multipart at all")
        with self.assertRaises(HandlerError) as e:
            serve(self.handler, request)
        self.assertEqual(e.exception.status, 400)

    def test_client_gone(self) -> None:
        """A client that leaves during a NOT_DONE_YET render fires the request's notifyFinish with an error."""
        events: list[str] = []

        class Waiting(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> Any:
                request.notifyFinish().addErrback(lambda f: events.append("lost"))
                return 1  # NOT_DONE_YET

        handler = TwistedResourceHandler(Waiting())
        response = FakeResponse()
        d = handler.serve(make_request(), response, None)
        self.assertNoResult(d)
        response.connection_lost(ConnectionError("gone"))
        self.successResultOf(d)
        self.assertEqual(events, ["lost"])


class DeferredRenderTests(TestCase):
    @inlineCallbacks
    def test_not_done_yet_and_prepath(self) -> Any:
        """NOT_DONE_YET renders finish later; a handle_path prefix is the prepath."""
        handler = TwistedResourceHandler(_pyapps.web_root())
        request = make_request("GET", "/mount/later/x")
        request.set_path("/later/x")
        response = FakeResponse()
        yield handler.serve(request, response, None)
        self.assertEqual((response.body, response.ended), (b"later:mount/later|x", True))

    @inlineCallbacks
    def test_klein(self) -> Any:
        """A klein app's routes answer, under a stripped prefix too."""
        handler = TwistedResourceHandler(_pyapps.klein_app().resource())
        response = FakeResponse()
        yield handler.serve(make_request("GET", "/"), response, None)
        self.assertEqual((response.status, response.body), (200, b"klein home"))
        request = make_request("GET", "/k/user/ann")
        request.set_path("/user/ann")
        response = FakeResponse()
        yield handler.serve(request, response, None)
        self.assertEqual(json.loads(response.body), {"name": "ann", "prepath": ["k", "user", "ann"]})


class LoadTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """A factory of a resource and a klein app factory both load; a missing module is a ConfigError."""
        handler = load_twisted_resource({"resource": f"{APPS}:web_root"}, LoadContext())
        self.assertIsNotNone(handler.resource.getStaticEntity(b"data"))
        handler = load_twisted_resource({"resource": f"{APPS}:klein_app()"}, LoadContext())
        self.assertEqual(type(handler.resource).__name__, "KleinResource")
        with self.assertRaises(ConfigError) as e:
            load_twisted_resource({"resource": "no_such_mod_q:root"}, LoadContext())
        self.assertIn("no_such_mod_q", str(e.exception))
        self.assertRaises(ConfigError, load_twisted_resource, {"resource": f"{APPS}:seen"}, LoadContext())
