"""What claims to provide an interface of ``txcaddy.interfaces`` does provide it.

Caddy guards each module type with a compile-time assertion
(``var _ caddyhttp.MiddlewareHandler = (*StaticResponse)(nil)``); here the
guard is ``verifyObject`` over every module in the registry and over the
HTTP-side objects that protocols and handlers meet. The fakes of
``txcaddy.testing`` are checked in ``tests/test_testing.py``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from txcaddy import interfaces
from txcaddy.config import registry
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.request import _DISCARD, RequestBody
from txcaddy.http.response import ResponseWrapper
from txcaddy.http.routing import RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import (
    IBodyConsumer,
    ICaddyModule,
    ICertificateIssuer,
    IExchange,
    IHandler,
    IHTTPServer,
    ILogEncoder,
    ILogWriter,
    IPlaceholderProvider,
    IRequest,
    IRequestMatcher,
    IResponse,
    ISelectionPolicy,
    IServerConnection,
    IStorage,
    IUpstreamConnection,
    IUpstreamSource,
    IUpstreamTransport,
)
from txcaddy.reverseproxy._h1connection import HTTP11Connection
from txcaddy.reverseproxy._pool import HostPool
from txcaddy.reverseproxy.streaming import BufferedBody, RequestBodyPump, ResponseRelay
from txcaddy.reverseproxy.transport import (
    ConnectionPool,
    HTTPTransport,
    ResponseBodyConsumer,
    UpstreamAddress,
)
from txcaddy.testing import (
    FakeResponse,
    FakeServer,
    FakeUpstreamTransport,
    MemoryServingReactor,
    make_request,
)
from txcaddy.tls.internalca import load_internal_issuer, load_pki_app
from txcaddy.tls.storage import FileStorage, MemoryStorage

PLUGINS_DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "plugins.md")

# The interface every module registered under a namespace provides.
NAMESPACES = {
    "http.handlers.": IHandler,
    "http.matchers.": IRequestMatcher,
    "http.reverse_proxy.selection_policies.": ISelectionPolicy,
    "http.reverse_proxy.upstreams.": IUpstreamSource,
    "caddy.logging.writers.": ILogWriter,
    "caddy.logging.encoders.": ILogEncoder,
}

# The smallest config of each module that needs more than ``{}`` to load.
CONFIGS: dict[str, Any] = {
    "caddy.logging.encoders.filter": {"wrap": {"format": "json"}},
    "caddy.logging.writers.file": {"filename": "access.log"},
    "caddy.logging.writers.net": {"address": "udp/127.0.0.1:9"},
    "http.matchers.host": ["example.com"],
    "http.matchers.method": ["GET"],
    "http.matchers.not": [{}],
    "http.matchers.path": ["/"],
    "http.matchers.protocol": "http",
    "http.matchers.expression": "true",
    "http.reverse_proxy.selection_policies.header": {"field": "X-Key"},
    "http.reverse_proxy.selection_policies.query": {"key": "k"},
    # the Python-app handlers import their app when they load: the bundled example's
    "http.handlers.wsgi": {"app": "txcaddy.examples.app.webapp:app"},
    "http.handlers.twisted_resource": {"resource": "txcaddy.examples.app.api:root"},
}

# Registered only so that a config naming them gets a clear error: they never load.
REFUSED: set[str] = set()

# Modules that load only under Twisted's asyncio reactor (a clear error elsewhere): the test
# checks that error, and ``test_asgi_handler_provides_ihandler`` the object itself.
NEEDS_ASYNCIO = {"http.handlers.asgi": {"app": "bench.apps.hello:asgi_app"}}

# Every interface of txcaddy.interfaces that some test verifies an implementation of
# (here or in tests/test_testing.py). A new interface goes here with its test.
VERIFIED = {
    IBodyConsumer,
    ICaddyModule,
    IExchange,
    IHandler,
    IHTTPServer,
    IRequest,
    IRequestMatcher,
    IResponse,
    ISelectionPolicy,
    IServerConnection,
    IStorage,
    ICertificateIssuer,
    IUpstreamConnection,
    IUpstreamSource,
    IUpstreamTransport,
    ILogEncoder,
    ILogWriter,
    IPlaceholderProvider,
}


class RegisteredModuleTests(SynchronousTestCase):
    """Every built-in module loads into an object providing its namespace's interface."""

    def setUp(self) -> None:
        self.context = LoadContext(reactor=MemoryReactorClock())
        self.addCleanup(self.context.unload)

    def assertNamespaceProvides(self, prefix: str) -> None:
        interface = NAMESPACES[prefix]
        names = registry.known(prefix)
        self.assertNotEqual(names, [], f"no module registered under {prefix}")
        for name in names:
            if "." in name:
                continue  # a nested namespace (caddy.logging.encoders.filter.*)
            module_id = prefix + name
            factory = registry.lookup(module_id)
            if module_id in REFUSED:
                self.assertRaises(ConfigError, factory, {}, self.context)
                continue
            if module_id in NEEDS_ASYNCIO:
                error = self.assertRaises(ConfigError, factory, NEEDS_ASYNCIO[module_id], self.context)
                self.assertIn("asyncio reactor", str(error))
                continue
            runtime = factory(CONFIGS.get(module_id, {}), self.context)
            try:
                verifyObject(interface, runtime)
            except Exception as error:  # noqa: BLE001 - re-raised naming the module
                self.fail(f"{module_id} ({type(runtime).__name__}) does not provide {interface.__name__}: {error}")

    def test_handlers_provide_ihandler(self) -> None:
        """Every registered ``http.handlers.*`` module loads into an ``IHandler``."""
        self.assertNamespaceProvides("http.handlers.")

    def test_asgi_handler_provides_ihandler(self) -> None:
        """The ``asgi`` handler (built on an asyncio loop of its own) provides ``IHandler``."""
        import asyncio

        from bench.apps.hello import asgi_app
        from txcaddy.http.handlers.asgi import ASGIHandler, Lifespan

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        handler = ASGIHandler(asgi_app, "hello", loop, MemoryReactorClock(), Lifespan(asgi_app, loop, "off", "hello"))
        self.assertTrue(verifyObject(IHandler, handler))

    def test_matchers_provide_irequestmatcher(self) -> None:
        """Every registered ``http.matchers.*`` module loads into an ``IRequestMatcher``."""
        self.assertNamespaceProvides("http.matchers.")

    def test_policies_provide_iselectionpolicy(self) -> None:
        """Every registered selection policy loads into an ``ISelectionPolicy``."""
        self.assertNamespaceProvides("http.reverse_proxy.selection_policies.")

    def test_upstream_sources_provide_iupstreamsource(self) -> None:
        """Every registered dynamic upstreams module loads into an ``IUpstreamSource``."""
        self.assertNamespaceProvides("http.reverse_proxy.upstreams.")

    def test_log_writers_provide_ilogwriter(self) -> None:
        """Every registered log writer loads into an ``ILogWriter``."""
        self.assertNamespaceProvides("caddy.logging.writers.")

    def test_log_encoders_provide_ilogencoder(self) -> None:
        """Every registered log encoder loads into an ``ILogEncoder``."""
        self.assertNamespaceProvides("caddy.logging.encoders.")


class PluginExampleTests(SynchronousTestCase):
    """The plugin of docs/plugins.md provides the interfaces the page says it does."""

    def setUp(self) -> None:
        with open(PLUGINS_DOC) as f:
            source = re.search(r"```python\n(.*?)```", f.read(), re.S)
        assert source is not None
        self.namespace: dict[str, Any] = {"__name__": "hello_plugin"}
        exec(source.group(1), self.namespace)  # noqa: S102 - our own docs

    def test_module_provides_icaddymodule(self) -> None:
        """The example's module object provides ``ICaddyModule``."""
        self.assertTrue(verifyObject(ICaddyModule, self.namespace["hello"]))

    def test_handler_provides_ihandler(self) -> None:
        """The handler the example's module loads provides ``IHandler``."""
        self.assertTrue(verifyObject(IHandler, self.namespace["hello"].load({}, LoadContext())))


class PluginPackageExampleTests(SynchronousTestCase):
    """The installable example of docs/plugins.md (docs/examples/plugin) provides what it says."""

    def setUp(self) -> None:
        root = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "plugin")
        sys.path.insert(0, root)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(sys.modules.pop, "txcaddy_example", None)
        self.namespace: dict[str, Any] = {"__name__": "txcaddy_example_plugin"}
        with open(os.path.join(root, "twisted", "plugins", "txcaddy_example_plugin.py")) as f:
            exec(f.read(), self.namespace)  # noqa: S102 - our own docs

    def test_modules_and_their_objects(self) -> None:
        """Its module objects provide ``ICaddyModule`` and load an ``IHandler`` and an ``ISelectionPolicy``."""
        greet, pinned = self.namespace["GreetModule"], self.namespace["PinnedModule"]
        self.assertTrue(verifyObject(ICaddyModule, greet))
        self.assertTrue(verifyObject(ICaddyModule, pinned))
        self.assertTrue(verifyObject(IHandler, greet.load({"name": "x"}, LoadContext())))
        self.assertTrue(verifyObject(ISelectionPolicy, pinned.load({"dial": "a:1"}, LoadContext())))

    def test_placeholder_provider(self) -> None:
        """Its placeholder plugin provides ``IPlaceholderProvider`` and counts path segments."""
        provider = self.namespace["ExamplePlaceholders"]
        self.assertTrue(verifyObject(IPlaceholderProvider, provider))
        self.assertEqual(provider.resolve(make_request("GET", "/a/b/"), "path_depth"), 2)
        self.assertIsNone(provider.resolve(make_request("GET", "/"), "nope"))


class HTTPSideTests(SynchronousTestCase):
    """The request, response, connection and server that HTTP/1.1 serving is made of."""

    def setUp(self) -> None:
        self.server = FakeServer()
        self.protocol = HTTP11Factory(self.server, MemoryReactorClock()).buildProtocol(None)
        self.protocol.makeConnection(StringTransport())
        self.protocol.dataReceived(b"GET /a%20b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")
        [(self.request, self.response)] = self.server.requests

    def test_protocol_request_provides_irequest(self) -> None:
        """The request the HTTP/1.1 protocol builds provides ``IRequest``."""
        self.assertTrue(verifyObject(IRequest, self.request))

    def test_made_request_provides_irequest(self) -> None:
        """``make_request`` builds an ``IRequest``."""
        self.assertTrue(verifyObject(IRequest, make_request()))

    def test_protocol_response_provides_iresponse(self) -> None:
        """The HTTP/1.1 protocol's response provides ``IResponse``."""
        self.assertTrue(verifyObject(IResponse, self.response))

    def test_response_wrapper_provides_iresponse(self) -> None:
        """A ``ResponseWrapper`` (what handlers pass down the chain) provides ``IResponse``."""
        self.assertTrue(verifyObject(IResponse, ResponseWrapper(self.response)))

    def test_protocol_provides_iserverconnection(self) -> None:
        """The HTTP/1.1 protocol is an ``IServerConnection`` to its server."""
        self.assertTrue(verifyObject(IServerConnection, self.protocol))
        self.assertEqual(self.server.connections, {self.protocol})

    def test_server_provides_ihttpserver(self) -> None:
        """``HTTPServer`` provides ``IHTTPServer``."""
        self.assertTrue(verifyObject(IHTTPServer, HTTPServer("srv0", [":80"], RouteList([]))))


class UpstreamInterfaceTests(SynchronousTestCase):
    """The real upstream classes provide the interfaces the proxy and the pool call them by."""

    def test_http_transport(self) -> None:
        """``HTTPTransport`` provides ``IUpstreamTransport``."""
        self.assertTrue(verifyObject(IUpstreamTransport, HTTPTransport.from_config({}, MemoryServingReactor())))

    def test_exchange(self) -> None:
        """The HTTP/1.1 ``Exchange`` provides ``IExchange``."""
        pool = ConnectionPool(MemoryReactorClock())
        exchange = pool.request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [(b"Host", b"a")])
        aborted = exchange.head  # the Deferred verifyObject sees; the abort below fails it
        self.assertTrue(verifyObject(IExchange, exchange))
        exchange.abort()
        self.failureResultOf(aborted)

    def test_http11_connection(self) -> None:
        """The HTTP/1.1 connection protocol provides ``IUpstreamConnection`` for the pool."""
        pool = ConnectionPool(MemoryReactorClock())
        address = UpstreamAddress.parse("127.0.0.1:9000")
        conn = HTTP11Connection(pool, HostPool(pool, address.key, address))
        conn.makeConnection(StringTransport())
        self.assertTrue(verifyObject(IUpstreamConnection, conn))

    def test_body_consumers(self) -> None:
        """Request-body and response-body consumers share ``IBodyConsumer``."""
        fake = FakeUpstreamTransport()
        exchange = fake.request(UpstreamAddress.parse("127.0.0.1:9000"), b"POST", b"/", [], 3)
        body = RequestBody(3)
        consumers = [
            _DISCARD,
            ResponseBodyConsumer(),
            RequestBodyPump(body, exchange),
            BufferedBody(RequestBody(3), 0, lambda: None),
            ResponseRelay(FakeResponse(), exchange, 0.0, Clock(), lambda reason: None, False),
        ]
        for consumer in consumers:
            self.assertTrue(verifyObject(IBodyConsumer, consumer), consumer)


class StorageInterfaceTests(SynchronousTestCase):
    """The certificate storages provide ``IStorage``."""

    def test_file_storage(self) -> None:
        """``FileStorage`` provides ``IStorage``."""
        self.assertTrue(verifyObject(IStorage, FileStorage(self.mktemp(), Clock())))

    def test_memory_storage(self) -> None:
        """``MemoryStorage`` provides ``IStorage``."""
        self.assertTrue(verifyObject(IStorage, MemoryStorage(Clock())))


class IssuerInterfaceTests(SynchronousTestCase):
    """Certificate issuers provide ``ICertificateIssuer``."""

    def test_internal_issuer(self) -> None:
        """The local CA's ``internal`` issuer provides ``ICertificateIssuer``."""
        clock = Clock()
        issuer = load_internal_issuer({"module": "internal"}, load_pki_app(None, clock), clock)
        self.assertTrue(verifyObject(ICertificateIssuer, issuer))


class CoverageTests(SynchronousTestCase):
    def test_every_interface_is_verified(self) -> None:
        """Each interface declared in ``txcaddy.interfaces`` has its implementations verified by a test."""
        declared = {
            value
            for value in vars(interfaces).values()
            if isinstance(value, InterfaceClass) and value.__module__ == interfaces.__name__
        }
        self.assertEqual(sorted(i.__name__ for i in declared - VERIFIED), [])
