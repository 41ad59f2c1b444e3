"""``acme_server`` (``http.handlers.acme_server``): an ACME CA on a ``pki`` certificate authority.

Caddy 2.6.2's ``modules/caddypki/acmeserver/acmeserver.go``: requests whose path starts
with ``path_prefix`` (default ``/acme/``) are ACME requests for the CA ``ca`` (default
``local``), whose directory is ``https://<host><prefix><ca>/directory``; other requests
go to the next handler. ``host`` replaces the request's Host in the URLs the server
hands out; ``lifetime`` (default 12h) is the issued leaves' lifetime; ``resolvers``
are the DNS servers for ``dns-01``. The protocol is ``_acmeserver.ACMEServer``; this
module is the HTTP side, the config, and where the state lives: one ``ACMEState`` per
CA in the service's ``Runtime`` (``ACMEServers``), so accounts and orders outlive a
reload but not a restart.

The CA comes from the config's ``pki`` app, which the service builds after the HTTP
app; the handler asks the load context for it when a request comes (a handler in the
config makes the service run the ``pki`` app, as Caddy's ``ctx.App("pki")`` does).
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, BOOL, DURATION, STRING, ListOf, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler
from txcaddy.tls.internalca import DEFAULT_CA_ID

if TYPE_CHECKING:
    from txcaddy.tls._acmeserver import ACMEState, ChallengeTargets, Reply

# The protocol (``_acmeserver``: josepy, acme's JWS) and twisted.web's client are imported
# when an acme_server is configured, not with the module registry: most servers have none,
# and those imports cost about 5 MB of memory per process.

__all__ = ["ACMEServerHandler", "ACMEServers", "ChallengeTargets", "DEFAULT_PATH_PREFIX", "DEFAULT_LIFETIME"]


def __getattr__(name: str) -> Any:
    if name == "ChallengeTargets":  # re-exported, imported on first use
        from txcaddy.tls._acmeserver import ChallengeTargets

        return ChallengeTargets
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_PATH_PREFIX = "/acme/"
DEFAULT_LIFETIME = 12 * 3600.0
VALIDATION_TIMEOUT = 30.0


class ACMEServers:
    """A service's ACME servers' state: one ``ACMEState`` per CA ID, and where challenge
    validations connect (``targets``; tests point it at loopback ports)."""

    def __init__(self) -> None:
        from txcaddy.tls._acmeserver import ChallengeTargets

        self.states: dict[str, ACMEState] = {}
        self.targets: ChallengeTargets = ChallengeTargets()

    def state(self, ca_id: str) -> ACMEState:
        state = self.states.get(ca_id)
        if state is None:
            from txcaddy.tls._acmeserver import ACMEState

            state = self.states[ca_id] = ACMEState()
        return state


class _Collect:
    """An ``IBodyConsumer`` gathering the (small) JWS body, up to ``MAX_BODY`` bytes."""

    def __init__(self) -> None:
        from txcaddy.tls._acmeserver import MAX_BODY

        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = MAX_BODY + 1
        self.done: Deferred[bytes] = Deferred()

    def body_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= self.limit:
            self.chunks.append(data)

    def body_trailers(self, trailers: Any) -> None:
        pass

    def body_finished(self, reason: Failure | None) -> None:
        if reason is not None:
            self.done.errback(reason)
        else:
            self.done.callback(b"".join(self.chunks))


@implementer(IHandler)
class ACMEServerHandler:
    """``http.handlers.acme_server``.

    @ivar ca_id: the ``pki`` CA that signs. @ivar host: the host in the URLs handed out
        (the request's Host when empty). @ivar path_prefix: where the ACME endpoints live.
    """

    def __init__(
        self,
        ca_id: str,
        *,
        context: Any,
        servers: ACMEServers,
        host: str = "",
        path_prefix: str = DEFAULT_PATH_PREFIX,
        lifetime: float = DEFAULT_LIFETIME,
        sign_with_root: bool = False,
        resolvers: list[str] | None = None,
    ) -> None:
        self.ca_id = ca_id
        self.context = context
        self.servers = servers
        self.host = host
        self.path_prefix = path_prefix
        self.lifetime = lifetime
        self.sign_with_root = sign_with_root
        self.resolvers = resolvers or []
        self._txt_resolver: Any = None
        reactor = context.reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.reactor = reactor
        from txcaddy.tls._acmeserver import ACMEServer

        self.server = ACMEServer(
            ca_id, servers.state(ca_id), self._signer, lifetime=lifetime, http_get=self._http_get,
            txt_lookup=self._txt_lookup, tls_alpn_get=self._tls_alpn_get, targets=servers.targets, clock=reactor.seconds,
        )

    def _signer(self) -> Any:
        from txcaddy.tls._acmeserver import ACMEProblem

        pki = getattr(self.context, "pki", None)
        if pki is None:
            raise ACMEProblem("serverInternal", "the pki app is not running", 500)
        ca = pki.get_ca(self.ca_id)
        if not ca.provisioned:
            raise ACMEProblem("serverInternal", f"the CA {self.ca_id!r} is not ready yet", 503)
        return ca.signer(with_root=self.sign_with_root)

    def _http_get(self, address: str, port: int, host: str, path: str) -> Deferred[bytes]:
        """GET ``path`` from ``address:port`` with ``Host: host`` (redirects are not followed)."""
        from twisted.web.client import Agent, readBody
        from twisted.web.http_headers import Headers as TwistedHeaders

        from txcaddy.tls._acmeserver import ACMEProblem

        hostport = f"[{address}]" if ":" in address else address
        url = f"http://{hostport}:{port}{path}".encode("ascii")
        headers = TwistedHeaders({b"Host": [host.encode("idna") if not host.isascii() else host.encode()],
                                  b"User-Agent": [b"txcaddy acme_server"]})
        d: Deferred[Any] = Agent(self.reactor).request(b"GET", url, headers)

        def got(response: Any) -> Deferred[bytes]:
            if response.code != 200:
                response.deliverBody(_Ignore())
                raise ACMEProblem("unauthorized", f"http-01: {url.decode()} answered {response.code}", 403)
            return readBody(response)

        d.addCallback(got)
        d.addTimeout(VALIDATION_TIMEOUT, self.reactor)
        return d

    def _tls_alpn_get(self, address: str, port: int, server_name: str) -> Deferred[tuple[str | None, bytes]]:
        """Handshake with ALPN ``acme-tls/1`` and SNI ``server_name`` (in the reactor's thread
        pool: the standard library's blocking TLS client, never verifying: RFC 8737's
        certificate is self-signed by design)."""
        from twisted.internet.threads import deferToThreadPool

        def handshake() -> tuple[str | None, bytes]:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["acme-tls/1"])
            with socket.create_connection((address, port), timeout=VALIDATION_TIMEOUT) as raw, \
                    context.wrap_socket(raw, server_hostname=server_name) as tls:
                return tls.selected_alpn_protocol(), tls.getpeercert(binary_form=True) or b""

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), handshake)

    def _txt_lookup(self, name: str) -> Deferred[list[bytes]]:
        from twisted.names import client, dns

        if self._txt_resolver is None:
            servers = []
            for address in self.resolvers:
                host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "53")
                servers.append((host.strip("[]") or address, int(port or 53)))
            if servers:
                self._txt_resolver = client.Resolver(servers=servers, reactor=self.reactor)
            else:
                self._txt_resolver = client.Resolver(resolv="/etc/resolv.conf", reactor=self.reactor)
        d = self._txt_resolver.lookupText(name)

        def records(result: Any) -> list[bytes]:
            answers = result[0]
            return [b"".join(a.payload.data) for a in answers if a.type == dns.TXT]

        return d.addCallback(records)  # type: ignore[no-any-return]

    # -- serving ---------------------------------------------------------------------------

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        if not request.path.startswith(self.path_prefix):
            return next(request, response)
        rest = request.path[len(self.path_prefix):]
        base = f"https://{self.host or request.host}{self.path_prefix}"
        if request.method != "POST":
            request.body.discard()
            return self._write(response, self.server.handle(request.method, rest, base, b""), request.method)
        collector = _Collect()
        request.body.deliver(collector)
        d = collector.done.addCallback(lambda body: self.server.handle("POST", rest, base, body))
        return d.addCallback(lambda reply: self._write(response, reply, "POST"))

    def _write(self, response: Response, reply: Reply | Deferred[Reply], method: str) -> Any:
        if isinstance(reply, Deferred):
            return reply.addCallback(lambda r: self._write(response, r, method))
        for name, value in reply.headers:
            response.headers.add(name, value)
        response.headers.set("Content-Length", str(len(reply.body)))
        response.write_head(reply.status)
        if reply.body and method != "HEAD":
            response.write(reply.body)
        return None


class _Ignore:
    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's naming
        pass

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        pass

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        pass


_SCHEMA = Obj(
    {
        "ca": STRING, "host": STRING, "path_prefix": STRING, "lifetime": DURATION, "sign_with_root": BOOL,
        "resolvers": ListOf(STRING), "challenges": ListOf(STRING), "policy": ANY,
    },
    strict=True,
    name="acmeserver.Handler",
)


@module("http.handlers.acme_server", schema=_SCHEMA)
def load_acme_server(config: dict[str, Any], context: Any) -> ACMEServerHandler:
    from txcaddy.config.values import duration_seconds

    ca_id = config.get("ca") or DEFAULT_CA_ID
    lifetime = duration_seconds(config.get("lifetime"), "acme_server.lifetime") or DEFAULT_LIFETIME
    if lifetime < 0:
        raise ConfigError("acme_server.lifetime: must be positive")
    if config.get("challenges") or config.get("policy"):
        raise ConfigError("acme_server: 'challenges' and 'policy' are not supported by txcaddy")
    runtime = getattr(context, "runtime", None)
    servers = runtime.get(ACMEServers) if runtime is not None else ACMEServers()
    if hasattr(context, "want_pki"):
        context.want_pki = True
    return ACMEServerHandler(
        ca_id, context=context, servers=servers, host=config.get("host") or "",
        path_prefix=config.get("path_prefix") or DEFAULT_PATH_PREFIX, lifetime=lifetime,
        sign_with_root=bool(config.get("sign_with_root")), resolvers=list(config.get("resolvers") or []),
    )
