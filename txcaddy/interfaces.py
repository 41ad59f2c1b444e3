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
