"""The interfaces txcaddy's pieces meet at.

A config is Caddy JSON; the loader turns each module in it (a handler, a
matcher, ...) into an object providing one of these interfaces, found by its
Caddy module ID (``http.handlers.static_response``, ``http.matchers.path``).
Third-party packages add modules with Twisted plugins providing
``ICaddyModule``.
"""

from __future__ import annotations

from twisted.internet.interfaces import IConsumer, IPushProducer
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

    # Optional attributes (not declared as Attributes so that plugins without them still verify):
    #
    # ``schema``: a ``txcaddy.config.schema.Spec`` for the module's JSON, checked before ``load``.
    #
    # ``caddyfile``: the module's Caddyfile unmarshaller, registered when the Caddyfile adapter
    # loads plugins (``txcaddy.caddyfile.registry.load_plugins``), so that the plugin's own
    # module never imports txcaddy's registries.  What it gets and returns depends on the
    # namespace: for ``http.handlers.<name>`` it is a handler directive (a ``Helper`` on the
    # directive's name → the handler's JSON object), for ``http.matchers.<name>`` a matcher
    # (a ``Dispenser`` over the matcher's tokens → its JSON value), and for every other
    # namespace (selection policies, upstream sources, storage, log writers and encoders, ...)
    # a module unmarshaller (a ``Dispenser`` whose first token is the module's name → the
    # module's JSON object without its name key), Caddy's ``UnmarshalCaddyfile``.
    #
    # ``directive_order``: for a handler, where its directive goes in the default order, as
    # ``("before" | "after", "<directive>")`` (Caddy 2.7's ``RegisterDirectiveOrder``); without
    # it the directive is used inside ``route`` or placed with the ``order`` global option.

    def load(config, context):  # noqa: N805
        """Build the runtime object from the module's JSON ``config`` (a dict).

        ``context`` is the ``LoadContext``: it loads nested modules and
        gives access to the reactor and the logger. The object must provide
        its namespace's interface (``IHandler`` for ``http.handlers``, ...:
        ``txcaddy.config.registry.NAMESPACE_INTERFACES``), else the config is
        refused with a ``ConfigError``.
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
    ``txcaddy.testing.FakeResponse``. What only some protocols can do (1xx
    responses, handing the connection over after a 101) is declared here too,
    with ``can_switch_protocols`` to ask first, so handlers call it without
    probing; where a protocol cannot, the base class says what happens.
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

    can_switch_protocols = Attribute(
        "True while ``switch_protocols`` may be called: an HTTP/1.1 upgrade request, nothing answered yet."
    )

    def write_informational(status, headers=None):  # noqa: N805
        """Send a 1xx response (103 Early Hints, ...) before the final one; dropped where the
        protocol has none (HTTP/1.0), as Go does."""

    def flush():  # noqa: N805
        """Send the head and any body held back now (streamed responses); nothing if none is."""

    def switch_protocols(protocol):  # noqa: N805
        """Answer ``101 Switching Protocols`` and hand the connection to ``protocol``
        (only while ``can_switch_protocols``)."""

    def abort_connection():  # noqa: N805
        """Close the client connection after what was written (Go's ``ErrAbortHandler``)."""


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


# -- bodies and the upstream side of reverse_proxy -------------------------------------------
#
# Where the proxy loop meets its transport (``IUpstreamTransport``, ``IExchange``), where the
# pool meets its connections (``IUpstreamConnection``), and the one body-consumer interface
# shared by request bodies (``txcaddy.http.request.RequestBody``) and upstream response bodies.
# These sit on the per-request path: implementations provide plain attributes and methods, and
# callers call them directly (no adapters, no probing).


class IBodyConsumer(Interface):
    """Takes a body as it arrives: a request body, or an upstream response body.

    Calls come in order: ``body_data`` any number of times, ``body_trailers`` at most once,
    then ``body_finished`` exactly once.  The producer's side paces the flow (the connection
    is paused by whoever holds the body's producer), so a consumer never buffers on its own.
    """

    def body_data(data):  # noqa: N805
        """The next piece of the body (``bytes``, never empty)."""

    def body_trailers(trailers):  # noqa: N805
        """Trailer fields as a list of ``(name, value)`` bytes pairs (only if there are any).

        Request bodies do not deliver trailers (the HTTP/1.1 server drops them).
        """

    def body_finished(reason):  # noqa: N805
        """The body ended: ``reason`` is None when it is complete, else a ``Failure`` saying why not."""


class IExchange(IConsumer, IPushProducer):
    """One request sent upstream and its response: what ``IUpstreamTransport.request`` returns.

    The request body (when ``body_length`` was given) is written through it as an
    ``IConsumer`` (``registerProducer``/``write``/``finish_body``): a streaming producer is
    paused until the upstream takes the body and whenever it takes no more; the response head arrives
    through ``when_head``; the body is then delivered to an ``IBodyConsumer`` with
    ``deliver_body``, or after a ``101`` the raw connection is taken with ``switch_protocol``.
    As an ``IPushProducer`` it lets the client's response pause reading from the upstream.
    Failures are ``txcaddy.reverseproxy.errors.UpstreamError``s (each with the status Caddy
    answers) or whatever ``abort`` was given.
    """

    response = Attribute("The final ``ResponseHead`` once it arrived, else None.")
    sent_anything = Attribute(
        "True once some of the request may have reached the upstream (a connection took it).")
    body_wanted = Attribute(
        "True while the upstream connection takes the request body now (it was not held back).")
    finished = Attribute("True once the exchange is over: response complete, failed or aborted.")

    def when_head(on_head, on_failure):  # noqa: N805
        """Call ``on_head(head)`` with the final ``ResponseHead``, or ``on_failure(failure)``.

        Plain callbacks, called at once when the result is already there: the per-request path
        makes no Deferred.
        """

    head = Attribute("The final ``ResponseHead`` as a Deferred (cancelling it aborts the exchange).")

    def write(data):  # noqa: N805
        """Send request body bytes (the exchange frames them)."""

    def finish_body(trailers=None):  # noqa: N805
        """End the request body, with trailer fields when the protocol can send them."""

    def deliver_body(consumer):  # noqa: N805
        """Feed the response body to ``consumer`` (an ``IBodyConsumer``), kept bytes first."""

    def switch_protocol(protocol):  # noqa: N805
        """After a ``101``: connect ``protocol`` to the raw upstream connection."""

    def abort(reason=None):  # noqa: N805
        """Give up (``reason``, an exception, is what the caller's callbacks get); never reused.

        As a producer, ``pauseProducing``/``resumeProducing`` stop and restart reading the
        response from the upstream; ``stopProducing`` (the response's consumer is gone) aborts.
        """


class IUpstreamTransport(Interface):
    """What ``reverse_proxy`` sends requests through, Caddy's ``http.RoundTripper`` module.

    The ``http.reverse_proxy.transport.*`` module the config names provides it
    (``txcaddy.reverseproxy.transport.HTTPTransport`` for ``http``).  ``txcaddy.testing``
    has a fake one for tests of proxy routes without sockets.
    """

    compression = Attribute(
        "True to ask upstreams for gzip (and decode it) when the client asked for no encoding.")
    unsupported_reason = Attribute(
        "None, or why every request through this transport must fail (answered 502).")

    def request(address, method, target, headers, body_length=None,  # noqa: N805
                on_informational=None, request=None):
        """Send a request to ``address`` (an ``UpstreamAddress``); return its ``IExchange``.

        ``method`` and ``target`` are bytes; ``headers`` a list of ``(name, value)`` bytes pairs
        including Host, without framing fields; ``body_length`` None (no body), a length, or
        ``CHUNKED``.  ``on_informational(head)`` gets each 1xx head but ``101``.  ``request`` is
        the client's request (for placeholders in TLS settings).  Never raises: failures arrive
        through the exchange.
        """

    def close_idle():  # noqa: N805
        """Close the idle upstream connections (the config is unloaded).

        Returns a Deferred that fires once those connections are closed.
        """


class IUpstreamConnection(Interface):
    """A connection the upstream pool holds (``txcaddy.reverseproxy._pool``), any protocol.

    The pool keeps a connection in its host's idle stack while it can take another request,
    and gives it exchanges with ``start``; the connection reports the end of each with
    ``host.connection_done(conn, reusable)`` (or ``host.connection_detached`` after it left
    HTTP, ``host.idle_lost`` when it closed while idle, ``host.redial(exchange)`` for a
    protocol's re-send on a new connection).  HTTP/1.1 takes one exchange at a time; a
    multiplexed connection returns to the idle stack while it has a free stream slot.
    """

    host = Attribute("The ``HostPool`` the connection belongs to.")
    connected = Attribute("True from ``connectionMade`` until ``connectionLost``.")
    transport = Attribute("The Twisted transport (the dialler aborts it on a handshake timeout).")
    idle_since = Attribute(
        "Set by the pool: the reactor time the connection went idle; None while it is busy.")
    idle_timer = Attribute("The pool's idle-timeout call for it, or None; cancelled when lost.")
    dial = Attribute(
        "The ``Dial`` waiting for its TLS handshake (told ``handshake_done`` / ``_failed``), or None.")
    handshake_ok = Attribute("True once a TLS handshake completed.")
    lost_reason = Attribute("The ``Failure`` it was lost with, or None.")

    def start(exchange):  # noqa: N805
        """Send ``exchange`` on this connection now."""

    def close():  # noqa: N805
        """Close it cleanly (the pool retires an idle connection)."""

    def when_closed():  # noqa: N805
        """A Deferred firing once the connection is closed."""


class IStorage(Interface):
    """Where certificates, keys, ACME accounts and the local CA live: certmagic's ``Storage``.

    Keys are ``/``-separated paths in Caddy's layout (``certificates/<issuer>/<name>/<name>.crt``,
    ``pki/authorities/local/root.crt``, ``acme/<ca>/users/<email>/…``, ``locks/…``; the key
    builders are in ``txcaddy.tls.storage``), so a directory Caddy 2.6.2 wrote serves txcaddy and
    the other way round.  Every method returns a Deferred, so a backend may do network I/O (the
    Redis backend of the scale work); the file-system backend fires them at once.  A key that is
    absent fails the Deferred with ``txcaddy.tls.storage.KeyNotFound``.
    """

    def store(key, value):  # noqa: N805
        """Write ``value`` (bytes) under ``key``, replacing what was there, atomically."""

    def load(key):  # noqa: N805
        """The bytes stored under ``key``."""

    def delete(key):  # noqa: N805
        """Remove ``key`` (a file, or a "directory" prefix and all below it)."""

    def exists(key):  # noqa: N805
        """Whether ``key`` is stored (fires with a bool; never fails for absence)."""

    def list(prefix, recursive):  # noqa: N805
        """The keys directly below ``prefix`` (all below it if ``recursive``), sorted."""

    def stat(key):  # noqa: N805
        """A ``txcaddy.tls.storage.KeyInfo`` (key, modified time, size, is_terminal)."""

    def lock(name):  # noqa: N805
        """Fires once this process holds the lock ``name`` (waiting while another holds it).

        Locks are across processes and machines sharing the storage: two instances never order
        the same certificate at once.  A holder that died leaves a lock that goes stale and is
        taken over (certmagic: 10 s without a refresh).
        """

    def unlock(name):  # noqa: N805
        """Release the lock ``name`` that this process holds."""


class ICertificateIssuer(Interface):
    """Gets certificates for names: certmagic's ``Issuer`` (the local CA, an ACME CA).

    The certificate manager (``txcaddy.tls.manager``) tries a policy's issuers in order; each
    is a module of the ``tls.issuance`` namespace (``internal``, ``acme``, ``zerossl``).
    """

    issuer_key = Attribute(
        "Its directory under ``certificates/`` in storage: the CA id for the local CA, the "
        "directory URL's host and path for ACME (``acme-v02.api.letsencrypt.org-directory``).")

    def pre_check(names):  # noqa: N805
        """Raise ``ValueError`` if this issuer will not issue for ``names`` (certmagic's
        ``PreChecker``: a public CA and ``localhost``); the manager then tries the next one."""

    def issue(names, private_key, attempt=0):  # noqa: N805
        """A Deferred firing with a ``txcaddy.tls.issuers.IssuedCertificate`` for ``names``
        and the public half of ``private_key`` (a ``cryptography`` private key).

        ``attempt`` counts the manager's earlier failed attempts for these names (an ACME
        issuer validates against its test CA first on a retry, as certmagic does).

        Never blocks the reactor: network and signing work that takes time runs in a thread.
        """


# -- more plugin kinds ---------------------------------------------------------------------


class ILogWriter(Interface):
    """Where a log's encoded lines go: a ``caddy.logging.writers.*`` module (Caddy's
    ``WriterOpener``). ``txcaddy.logs._writers`` has the built-in ones."""

    key = Attribute(
        "A string naming the destination: logs whose writers have the same key share one "
        "writer (opened once), as Caddy shares a file between logs.")

    def open():  # noqa: N805
        """Get ready to write (open the file, connect); called once before the first write."""

    def write(data):  # noqa: N805
        """Write one encoded log line (bytes, newline included). Called on the reactor
        thread: never block for long."""

    def close():  # noqa: N805
        """Release what ``open`` took; called when the config that opened it is unloaded."""


class ILogEncoder(Interface):
    """Turns a log entry into bytes: a ``caddy.logging.encoders.*`` module (Caddy's
    ``zapcore.Encoder``). ``txcaddy.logs._encoders`` has ``json``, ``console``, ``filter``."""

    def encode(entry):  # noqa: N805
        """The line (bytes, ending in a newline) for ``entry``, a
        ``txcaddy.logs.Entry`` (``level``, ``time``, ``logger``, ``message``, ``fields``:
        a list of ``(name, value)`` pairs)."""


class IPlaceholderProvider(Interface):
    """A plugin that gives values to placeholders under its own prefix (``{geo.country}``).

    Publish an object providing this and ``twisted.plugin.IPlugin`` from a ``twisted/plugins``
    folder. The placeholder code asks providers only for names nothing built in knows, and only
    when a template is built (at config load), so installing none costs requests nothing.
    """

    prefix = Attribute("The first dotted part(s) of the names it provides: 'geo' gives {geo.*}.")

    def resolve(request, name):  # noqa: N805
        """The value of ``{<prefix>.<name>}`` for ``request`` (an ``IRequest``), or None when
        it has none (the placeholder is then unknown, as Caddy treats a missing value)."""
