"""The interfaces txcaddy's pieces meet at.

A config is Caddy JSON; the loader turns each module in it (a handler, a
matcher, ...) into an object providing one of these interfaces, found by its
Caddy module ID (``http.handlers.static_response``, ``http.matchers.path``).
Third-party packages add modules with Twisted plugins providing
``ICaddyModule``.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IHandler(Interface):
    """An HTTP middleware handler, Caddy's ``MiddlewareHandler``."""

    def serve(request, response, next):  # noqa: N805  (zope interface signature)
        """Handle ``request``, writing to ``response`` and/or calling ``next``.

        ``next(request, response)`` runs the rest of the chain; a handler may
        pass a wrapped response down. Return ``None`` when done synchronously or
        a ``Deferred`` firing when done. Failures are ``HandlerError``s
        (raised or as the Deferred's failure); they go to the server's error
        routes.
        """


class IRequestMatcher(Interface):
    """A request matcher, Caddy's ``RequestMatcher``."""

    def match(request):  # noqa: N805
        """True if ``request`` matches; may record placeholders on it."""


class ISelectionPolicy(Interface):
    """A load-balancing policy, Caddy's ``reverseproxy.Selector``.

    ``reverse_proxy`` asks its policy for an upstream before every attempt
    (retries included). Built-in policies are the
    ``http.reverse_proxy.selection_policies.*`` modules in
    ``txcaddy.reverseproxy.selection``; a plugin module registered in that
    namespace is usable as ``{"policy": "<name>"}`` in JSON configs.
    """

    def select(pool, request, response):  # noqa: N805
        """Choose the upstream that serves ``request``, or None if none can.

        ``pool`` is the handler's sequence of ``Upstream``s in configured
        order; only those whose ``available()`` is true may be returned, and
        None makes the handler answer "no upstreams available" (503).
        ``response`` (possibly None) is there for policies that answer with
        something, like the sticky-session ``Set-Cookie``; add to its
        headers, never replace them. Called on the reactor thread, once per
        attempt: keep it quick and do not block.
        """


class IUpstreamSource(Interface):
    """Where a proxy's upstreams come from at request time, Caddy's ``UpstreamSource``.

    ``dynamic_upstreams`` in a ``reverse_proxy`` config names one of the
    ``http.reverse_proxy.upstreams.*`` modules (``a``, ``srv``, ``multi`` in
    ``txcaddy.reverseproxy.upstreams``, or a plugin's). The handler asks its
    source before every attempt, retries included.
    """

    def get_upstreams(request):  # noqa: N805
        """The upstreams for this attempt: a list of ``Upstream``, or a ``Deferred`` firing with one.

        Return the list itself when it is at hand (cached): the proxy then
        goes on without a Deferred. The same list object may be returned
        again while it is valid and the handler treats it as read-only, so
        never change a list once returned. Only each upstream's ``dial``
        (and ``max_requests``) are used; the handler gives them its own
        shared host state. Raise, or fail the Deferred, when no upstreams
        can be had: the handler logs the error and uses its static
        upstreams.
        """


class ICaddyModule(Interface):
    """A plugin that provides one Caddy module to the loader.

    Publish an object providing this (and ``twisted.plugin.IPlugin``) from a
    module in a ``twisted/plugins/`` folder; see ``docs/plugins.md``.
    """

    moduleID = Attribute("The Caddy module ID, e.g. 'http.handlers.hello'.")

    def load(config, context):  # noqa: N805
        """Build the runtime object from the module's JSON ``config`` (a dict).

        ``context`` is the ``LoadContext``: it loads nested modules and
        gives access to the reactor and the logger.
        """


# -- the HTTP side: what handlers and matchers receive, what protocols talk to ------------


class IRequest(Interface):
    """An HTTP request being served, as handlers and matchers receive it.

    ``txcaddy.http.request.Request`` provides it (one per request, built by the
    connection's protocol when the head is complete; the body follows).
    Fields follow Go's ``http.Request`` where Caddy depends on them: ``path`` is
    decoded, ``raw_path`` keeps the escaping as received, ``orig_*`` is what
    arrived before any rewrite. In tests, ``txcaddy.testing.make_request``
    builds one with an in-memory body.
    """

    method = Attribute("The method (``GET``), as currently rewritten.")
    orig_method = Attribute("The method as received, before any rewrite.")
    request_uri = Attribute("The request-target exactly as received (``{http.request.orig_uri}``).")
    proto = Attribute("The protocol version as received, ``HTTP/1.1``.")
    version = Attribute("The protocol version as ``(major, minor)``.")
    headers = Attribute("The header fields, a ``txcaddy.http.headers.Headers``; handlers may change them.")
    host = Attribute("The Host (``example.com:8080``), as received or as set by a handler.")
    hostname = Attribute("The Host without its port (``[::1]:80`` gives ``::1``).")
    port = Attribute("The Host's port as text, or ``''`` when it has none.")
    scheme = Attribute("``https`` over TLS, else ``http``.")
    tls = Attribute(
        "The TLS connection's details (``server_name``, ``version``, ``cipher_suite``, ``proto``,"
        " ``resumed``, ``peer_certificate``), or None over plain TCP."
    )
    remote = Attribute("The client's ``(host, port)``.")
    local = Attribute("The server's ``(host, port)`` the request arrived on.")
    path = Attribute("The decoded path (``/a b``), as currently rewritten.")
    raw_path = Attribute("The path as escaped on the wire (``/a%20b``), as currently rewritten.")
    query = Attribute("The query string without its ``?``, as currently rewritten.")
    uri = Attribute("Path and query as currently rewritten (Go's ``RequestURI()``, ``{http.request.uri}``).")
    orig_path = Attribute("The decoded path as received, before any rewrite.")
    orig_raw_path = Attribute("The escaped path as received, before any rewrite.")
    orig_query = Attribute("The query string as received, before any rewrite.")
    body = Attribute(
        "The request body as it arrives (``txcaddy.http.request.RequestBody``): stream it to one"
        " consumer with ``deliver``, or ``discard`` it."
    )
    start = Attribute("When the request's head was complete, in seconds since the epoch.")
    server = Attribute("The ``IHTTPServer`` serving the request, or None outside a server.")
    vars = Attribute("Caddy's request variables, a dict (``root``, ``skip_log``, the ``vars`` handler's).")
    placeholders = Attribute(
        "Values that matchers and handlers publish as placeholders, a dict (``http.regexp.name.1``)."
    )
    error = Attribute("The ``HandlerError`` being handled while error routes run, else None.")

    def set_path(path):  # noqa: N805
        """Rewrite the path to the decoded ``path``; ``raw_path`` becomes its escaped form."""

    def set_raw_path(raw_path):  # noqa: N805
        """Rewrite the path to the escaped ``raw_path``; ``path`` becomes its decoded form."""

    def escaped_path():  # noqa: N805
        """The path as escaped on the wire (Go's ``URL.EscapedPath()``)."""


class IResponse(Interface):
    """The response a handler writes: status, header fields, a streamed body.

    ``txcaddy.http.response.Response`` provides it: the protocols' responses
    (HTTP/1.1's ``H1Response``), ``ResponseWrapper`` (what a handler passes
    down the chain to see or change what others write) and
    ``txcaddy.testing.FakeResponse``. A protocol's response may offer more,
    which handlers look up with ``getattr`` because not every response has
    them: ``write_informational(status, headers)`` (1xx responses),
    ``flush()`` (send what is held back now), ``can_switch_protocols`` and
    ``switch_protocols(protocol)`` (a 101 handing the connection over).
    """

    headers = Attribute("The header fields to send, a ``txcaddy.http.headers.Headers``; final once the head is sent.")
    status = Attribute("The status sent, 0 until the head is written.")
    head_sent = Attribute("True once the status and header fields are written.")
    finished = Attribute("True once the response is complete.")
    size = Attribute("Body bytes written by handlers so far, before any transfer coding.")
    lost = Attribute("Why the client went away (an exception), or None while it is there.")
    trailers = Attribute("Fields to send after the body (a ``Headers``), or None.")

    def on_head(callback):  # noqa: N805
        """Call ``callback(response, status)``, which returns the status to send, just before the head is written."""

    def write_head(status):  # noqa: N805
        """Write the status and header fields (once; later calls do nothing)."""

    def write(data):  # noqa: N805
        """Write body bytes, writing a 200 head first if none was written."""

    def finish():  # noqa: N805
        """Complete the response, writing a 200 head first if none was written; later calls do nothing."""

    def add_trailers(trailers):  # noqa: N805
        """Add ``trailers`` (a ``Headers``) to the fields sent after the body, where the protocol can."""

    def on_finish(callback):  # noqa: N805
        """Call ``callback()`` once the response is complete or the client is gone (at once if already so)."""

    def notify_finish():  # noqa: N805
        """A ``Deferred`` firing with None once the response is complete or the client is gone."""

    def register_producer(producer, streaming):  # noqa: N805
        """Let the client's backpressure pause ``producer`` (an ``IPushProducer`` when ``streaming``)."""

    def unregister_producer():  # noqa: N805
        """Undo ``register_producer``."""


class IServerConnection(Interface):
    """One client connection as its ``IHTTPServer`` sees it (``HTTP11Protocol`` for HTTP/1.1)."""

    transport = Attribute("The connection's transport, or None once it is gone.")

    def close_when_idle():  # noqa: N805
        """Graceful stop: finish the requests in flight, then close (a connection handed to a tunnel closes now)."""


class IHTTPServer(Interface):
    """One configured HTTP server, as the protocols of its connections talk to it.

    ``txcaddy.http.server.HTTPServer`` provides it. The HTTP/1.1 protocol
    (``txcaddy.http._h1``) tells it about each connection and hands it each
    request as soon as the request's head is complete; a protocol for another
    HTTP version talks to it the same way. ``txcaddy.testing.FakeServer``
    records what a protocol tells it.
    """

    name = Attribute("The server's name in the config (``apps.http.servers.NAME``).")
    max_header_bytes = Attribute("The most bytes a request's target and header fields may take; 0 for the protocol's default.")
    idle_timeout = Attribute("Seconds an idle connection stays open; 0 for no limit.")

    def handle(request, response):  # noqa: N805
        """Serve ``request`` (an ``IRequest``) through the routes, answering on ``response`` (an ``IResponse``).

        A handler's failure runs the error routes or answers a bare status;
        this never raises. The request's body may still be arriving; the
        response is finished (or the connection aborted) when the routes
        are done.
        """

    def connection_made(connection):  # noqa: N805
        """A client connection (an ``IServerConnection``) opened: track it until ``connection_lost``."""

    def connection_lost(connection):  # noqa: N805
        """A client connection closed (one handed to a tunnel: once the tunnel's other side closed too)."""

    def drain(grace_period, clock):  # noqa: N805
        """Graceful stop: close idle connections, let busy ones finish, force-close after ``grace_period`` seconds.

        Returns a ``Deferred`` firing with None when no connection is left.
        ``clock`` (an ``IReactorTime``) times the grace period.
        """
