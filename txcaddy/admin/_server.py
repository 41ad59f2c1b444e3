"""The admin endpoint: Caddy's admin API served by ``twisted.web`` on ``admin.listen``.

Follows Caddy 2.6.2's ``admin.go`` (server, Host/Origin checks, ``/config/``, ``/id/``,
``/stop``), ``caddyconfig/load.go`` (``/load``, ``/adapt``), ``reverseproxy/admin.go``
(``/reverse_proxy/upstreams``) and ``caddypki/adminapi.go`` (``/pki/ca/<id>``); the facts are
in ``spec/wave2-caddy-facts.md`` §6. Where txcaddy differs on purpose:

- a failed load changes nothing, the admin endpoint included (Caddy 2.6.2 has already moved
  the endpoint to the new config's ``admin`` settings when provisioning fails);
- client errors on ``/config/`` are 4xx (Caddy answers most of them with 500);
- the listener must be loopback or a unix socket unless ``origins`` are set (then the Host
  check guards it); request bodies are capped at ``MAX_BODY`` bytes (413).

The admin server is not on the hot path: ``twisted.web`` keeps it small and plain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from txcaddy.admin import _paths
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.formatter import format_caddyfile
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.metrics import Metrics, render_metrics

if TYPE_CHECKING:
    from txcaddy.service import CaddyService

DEFAULT_ADMIN_LISTEN = "localhost:2019"
MAX_BODY = 32 * 1024 * 1024  # a config larger than this is refused with 413
ALLOW_METHODS = "OPTIONS, GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Content-Type, Content-Length, Cache-Control"


_ADMIN_FIELDS = {"disabled", "listen", "enforce_origin", "origins", "config", "identity", "remote"}


class AdminError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminSettings:
    """The ``admin`` object of a config, resolved.

    @ivar endpoint: the Twisted endpoint description to listen on (None: ``admin off``).
    @ivar allowed: the Host values accepted (None: no Host check, as Caddy for ``:2019``).
    """

    def __init__(self, config: dict[str, Any] | None) -> None:
        config = config or {}
        if not isinstance(config, dict):
            raise ConfigError("admin: must be a JSON object")
        unknown = sorted(set(config) - _ADMIN_FIELDS)
        if unknown:
            raise ConfigError(f'admin: unknown field "{unknown[0]}"')
        if (config.get("config") or {}).get("load") is not None:
            raise ConfigError("admin.config.load: loading configs from a module is not supported")
        self.disabled = bool(config.get("disabled"))
        self.listen = str(config.get("listen") or DEFAULT_ADMIN_LISTEN)
        self.enforce_origin = bool(config.get("enforce_origin"))
        origins = config.get("origins")
        self.origins: list[str] | None = [str(o) for o in origins] if origins is not None else None
        self.unix = self.listen.startswith("unix/")
        self.endpoint: str | None = None
        self.host = ""
        self.port = 0
        if self.disabled:
            return
        if self.unix:
            self.endpoint = "unix:" + self.listen[len("unix/"):].replace(":", "\\:")
            return
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"admin.listen: invalid address {self.listen!r}: expected host:port or unix//path")
        self.host, self.port = host.strip("[]"), int(port)
        interface = "127.0.0.1" if self.host == "localhost" else self.host
        if not _loopback(self.host) and self.origins is None:
            raise ConfigError(
                f"admin.listen: {self.listen} is not a loopback address; set admin.origins to serve the "
                "admin API there (txcaddy refuses an unchecked remote admin endpoint)")
        self.endpoint = f"tcp:{self.port}" + (f":interface={interface.replace(':', chr(92) + ':')}" if interface else "")

    def same_listener(self, other: AdminSettings) -> bool:
        return self.endpoint == other.endpoint and self.disabled == other.disabled

    def allowed_hosts(self, bound_port: int) -> set[str] | None:
        """Caddy's ``allowedOrigins`` hosts (``checkHost``); None when the listener is unspecified."""
        if self.origins is not None:
            return {_origin_host(o) for o in self.origins}
        if self.unix:
            return {""}
        if self.host in ("", "0.0.0.0", "::"):
            return None
        port = bound_port or self.port
        return {f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}", self.listen,
                f"{_bracket(self.host)}:{port}"}


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _origin_host(origin: str) -> str:
    if "://" in origin:
        return urlsplit(origin).netloc
    return origin


class _LimitedRequest(server.Request):
    """A request whose body is dropped (and answered with 413) past ``MAX_BODY`` bytes."""

    too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        if length is not None and length > MAX_BODY:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._received += len(data)
        if self._received > MAX_BODY:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)


class AdminResource(Resource):
    """Every admin path (the resource tree is ours, not twisted.web's)."""

    isLeaf = True
    log = Logger()

    def __init__(self, admin: AdminService) -> None:
        super().__init__()
        self.admin = admin

    def render(self, request: server.Request) -> bytes | int:
        d = maybeDeferred(self._dispatch, request)
        d.addCallbacks(lambda result: self._answer(request, result), lambda f: self._failed(request, f))
        return server.NOT_DONE_YET

    def _count(self, request: server.Request, error: bool) -> None:
        """``caddy_admin_http_requests_total`` (and ``…_errors_total`` for a failed handler)."""
        handler, pattern = _mux_pattern(request.path.decode("utf-8", "replace"))
        method = request.method.decode("ascii", "replace")
        metrics = self.admin.service.runtime.get(Metrics)
        metrics.admin_requests.labels(handler, pattern, str(request.code or 200), method).inc()
        if error:
            metrics.admin_errors.labels(handler, pattern, method).inc()

    def _answer(self, request: server.Request, result: Any) -> None:
        self._count(request, False)
        if request.finished or getattr(request, "_disconnected", False):
            return
        if result is None:
            request.write(b"")
        elif isinstance(result, bytes):
            request.write(result)
        request.finish()

    def _failed(self, request: server.Request, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, _paths.ConfigPathError):
            status, message = error.status, error.message
        elif isinstance(error, AdminError):
            status, message = error.status, error.message
        elif isinstance(error, ConfigError):
            status, message = 400, f"loading config: {error}"
        else:
            self.log.failure("admin request failed", failure)
            status, message = 500, str(error)
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        self._count(request, True)
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps({"error": message}).encode() + b"\n")
        request.finish()

    # -- checks -----------------------------------------------------------------------------

    def _check(self, request: server.Request) -> None:
        settings = self.admin.settings
        host = (request.getHeader("host") or "")
        allowed = settings.allowed_hosts(self.admin.bound_port())
        if allowed is not None and host not in allowed:
            raise AdminError(403, f"host not allowed: {host}")
        if settings.enforce_origin:
            origin = request.getHeader("origin") or request.getHeader("referer") or ""
            parsed = urlsplit(origin) if "://" in origin else None
            if parsed is None or not parsed.netloc:
                raise AdminError(403, "required Origin header is missing or invalid")
            candidates = settings.origins if settings.origins is not None else sorted(allowed or ())
            if not any(_origin_matches(parsed, candidate) for candidate in candidates):
                raise AdminError(403, f"client is not allowed to access from origin '{origin}'")
            request.setHeader(b"access-control-allow-origin", origin.encode())
        if "websocket" in (request.getHeader("upgrade") or "").lower():
            raise AdminError(400, "websocket connections aren't allowed")
        if getattr(request, "too_large", False):
            raise AdminError(413, f"request body too large (limit {MAX_BODY} bytes)")

    # -- routing ----------------------------------------------------------------------------

    def _dispatch(self, request: server.Request) -> Any:
        self._check(request)
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        if method == "OPTIONS" and self.admin.settings.enforce_origin:
            request.setHeader(b"access-control-allow-methods", ALLOW_METHODS.encode())
            request.setHeader(b"access-control-allow-headers", ALLOW_HEADERS.encode())
            request.setHeader(b"access-control-allow-credentials", b"true")
            return None
        if path in ("/config", "/id"):
            request.setResponseCode(301)
            request.setHeader(b"location", (path + "/").encode())
            return None
        if path.startswith("/config/"):
            return self._config(request, method, path)
        if path.startswith("/id/"):
            return self._id(request, method, path)
        handler: dict[str, Callable[[server.Request, str], Any]] = {
            "/load": self._load, "/adapt": self._adapt, "/stop": self._stop,
            "/reverse_proxy/upstreams": self._upstreams,
        }
        if path in handler:
            return handler[path](request, method)
        extra = self.admin.routes.get(path)
        if extra is not None:
            return extra(request, method)
        if path.startswith("/pki/"):
            return self._pki(request, method, path)
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"404 page not found\n"

    def _json_body(self, request: server.Request) -> Any:
        data = request.content.read() if request.content is not None else b""
        if not data:
            return _paths._MISSING
        try:
            return json.loads(data)
        except ValueError as e:
            raise AdminError(400, f"decoding request body: {e}") from None

    def _config(self, request: server.Request, method: str, path: str) -> Any:
        service = self.admin.service
        raw = {"config": service.raw_config}
        if method == "GET":
            body = _paths.encode(_paths.access(raw, "GET", path))
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"etag", _paths.etag(path, body).encode())
            return body
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            raise AdminError(405, f"method {method} not allowed")
        if method != "DELETE":
            content_type = request.getHeader("content-type") or ""
            if "/json" not in content_type.lower():
                raise AdminError(400, f"unacceptable content-type: {content_type}; 'application/json' required")
        self._check_if_match(request, raw)
        value = self._json_body(request) if method != "DELETE" else _paths._MISSING
        changed = _paths.mutated(raw, method, path, None if value is _paths._MISSING else value).get("config")
        if not isinstance(changed, dict):
            changed = {}
        return self.admin.load(changed, force=_forced(request)).addCallback(lambda _: None)

    def _check_if_match(self, request: server.Request, raw: dict[str, Any]) -> None:
        value = request.getHeader("if-match")
        if value is None:
            return
        fields = value.strip('"').split(" ") if value.startswith('"') and value.endswith('"') else []
        if len(fields) != 2:
            raise AdminError(400, "malformed If-Match header; expect quoted string")
        current = _paths.encode(_paths.access(raw, "GET", fields[0]))
        if f"{_paths.fnv32a(current):x}" != fields[1]:
            raise AdminError(412, "If-Match header did not match current config hash")

    def _id(self, request: server.Request, method: str, path: str) -> Any:
        rest = path[len("/id/"):]
        ident, _, tail = rest.partition("/")
        if not ident:
            raise AdminError(400, "request path is missing object ID")
        target = _paths.index_ids(self.admin.service.raw_config).get(ident)
        if target is None:
            raise AdminError(404, f"unknown object ID '{ident}'")
        full = target + ("/" + tail if tail else "")
        return self._config(request, method, full)

    def _load(self, request: server.Request, method: str) -> Any:
        if method != "POST":
            raise AdminError(405, f"method not allowed: {method}")
        data = request.content.read() if request.content is not None else b""
        config, warnings = _adapt_body(request.getHeader("content-type") or "", data)
        d = self.admin.load(config, force=_forced(request))

        def loaded(_: Any) -> bytes | None:
            if warnings:
                request.setHeader(b"content-type", b"application/json")
                return json.dumps([_warning_json(w) for w in warnings]).encode() + b"\n"
            return None

        return d.addCallback(loaded)

    def _adapt(self, request: server.Request, method: str) -> bytes:
        if method != "POST":
            raise AdminError(405, f"method not allowed: {method}")
        data = request.content.read() if request.content is not None else b""
        config, warnings = _adapt_body(request.getHeader("content-type") or "", data)
        out: dict[str, Any] = {"result": config}
        if warnings:
            out["warnings"] = [_warning_json(w) for w in warnings]
        request.setHeader(b"content-type", b"application/json")
        return _paths.encode(out)

    def _stop(self, request: server.Request, method: str) -> None:
        if method != "POST":
            raise AdminError(405, "method not allowed")
        self.log.info("shutting down (admin API /stop)")
        request.notifyFinish().addBoth(lambda _: self.admin.stop())

    def _upstreams(self, request: server.Request, method: str) -> bytes:
        from txcaddy.reverseproxy.hosts import HostRegistry

        if method != "GET":
            raise AdminError(405, "method not allowed")
        hosts = self.admin.service.runtime.get(HostRegistry).all()
        request.setHeader(b"content-type", b"application/json")
        return _paths.encode([
            {"address": h.address, "num_requests": h.num_requests, "fails": h.fails} for h in hosts])

    def _pki(self, request: server.Request, method: str, path: str) -> bytes:
        if method != "GET":
            raise AdminError(405, "method not allowed")
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[1] != "ca" or len(parts) > 4 or (len(parts) == 4 and parts[3] != "certificates"):
            raise AdminError(404, f"resource not found: {path}")
        tls = self.admin.service.tls
        pki = getattr(tls, "pki", None)
        ca = pki.cas.get(parts[2]) if pki is not None else None
        if ca is None or not ca.provisioned:
            raise AdminError(404, f"no certificate authority configured with id: {parts[2]}")
        from cryptography.hazmat.primitives.serialization import Encoding

        root = ca.root_certificate.public_bytes(Encoding.PEM).decode()
        intermediate = ca.intermediate_certificate.public_bytes(Encoding.PEM).decode()
        if len(parts) == 4:
            request.setHeader(b"content-type", b"application/pem-certificate-chain")
            return (intermediate + root).encode()
        request.setHeader(b"content-type", b"application/json")
        return _paths.encode({
            "id": ca.id, "name": ca.name, "root_common_name": ca.root_common_name,
            "intermediate_common_name": ca.intermediate_common_name,
            "root_certificate": root, "intermediate_certificate": intermediate,
        })


def _origin_matches(parsed: Any, allowed: str) -> bool:
    if "://" in allowed:
        want = urlsplit(allowed)
        return bool(want.scheme == parsed.scheme and want.netloc == parsed.netloc)
    return bool(allowed == parsed.netloc)


def _forced(request: server.Request) -> bool:
    return "must-revalidate" in (request.getHeader("cache-control") or "")


def _warning_json(warning: ConfigWarning) -> dict[str, Any]:
    out: dict[str, Any] = {"file": warning.file, "line": warning.line}
    if warning.directive:
        out["directive"] = warning.directive
    out["message"] = warning.message
    return out


def _adapt_body(content_type: str, data: bytes) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """A request body as Caddy JSON: JSON as is, or adapted by the adapter its MIME subtype names."""
    mime = content_type.split(";", 1)[0].strip().lower()
    subtype = mime.split("/", 1)[1] if "/" in mime else mime
    if not mime or subtype.endswith("json"):
        try:
            config = json.loads(data or b"null")
        except ValueError as e:
            raise AdminError(400, f"decoding config: {e}") from None
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise AdminError(400, "decoding config: the config must be a JSON object")
        return config, []
    if subtype != "caddyfile":
        raise AdminError(400, f"unrecognized config adapter '{subtype}'")
    text = data.decode("utf-8", "replace")
    try:
        config, warnings = adapt(text, "Caddyfile")
    except ConfigError as e:
        raise AdminError(400, f"adapting config using caddyfile: {e}") from None
    warnings = list(warnings)
    try:
        if format_caddyfile(text) != text:
            warnings.insert(0, ConfigWarning(
                "Caddyfile", 1, "",
                "Caddyfile input is not formatted; run the 'caddy fmt' command to fix inconsistencies"))
    except ConfigError:
        pass
    return json.loads(json.dumps(config, default=_encode_default)), warnings


def _encode_default(value: Any) -> Any:
    from txcaddy.caddyfile.jsonenc import encode

    return json.loads(encode(value))


class AdminService(Service):
    """Serves the admin API for ``service`` on its config's ``admin.listen`` while running.

    ``configure`` moves it after a successful load whose ``admin`` settings differ: the new
    socket is bound before the old one closes; if it cannot be bound the old one stays.
    """

    log = Logger()

    def __init__(self, service: CaddyService, stop: Callable[[], Any]) -> None:
        self.service = service
        self.stop = stop
        self.settings = AdminSettings(service.raw_config.get("admin"))
        self.site = server.Site(AdminResource(self))
        self.site.requestFactory = _LimitedRequest
        self.site.displayTracebacks = False
        self.port: Any = None
        #: More endpoints by exact path: ``handler(request, method)`` returns the body (bytes),
        #: None, or a Deferred of either; raise ``AdminError`` for an error answer.
        self.routes: dict[str, Callable[[server.Request, str], Any]] = {"/metrics": self._metrics}

    def _metrics(self, request: server.Request, method: str) -> bytes:
        """The service's metrics in Prometheus' text format (Caddy's ``admin.api.metrics``)."""
        body, content_type = render_metrics(self.service.runtime.get(Metrics).registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body

    def bound_port(self) -> int:
        if self.port is None:
            return 0
        return int(getattr(self.port.getHost(), "port", 0) or 0)

    def load(self, config: dict[str, Any], force: bool = False) -> Deferred[None]:
        """Load ``config`` (raw, with ``@id``) unless it equals the running one (``force`` reloads)."""
        if not force and _paths.encode(config) == _paths.encode(self.service.raw_config):
            self.log.info("config is unchanged")
            return Deferred.fromCoroutine(_nothing())
        return self.service.reload(config).addErrback(_load_failed)

    def _listen(self, settings: AdminSettings) -> Any:
        assert settings.endpoint is not None
        if settings.unix:
            path = settings.listen[len("unix/"):]
            import os

            if os.path.exists(path):
                os.unlink(path)
        endpoint = serverFromString(self.service.reactor, settings.endpoint)
        result: list[Any] = []
        endpoint.listen(self.site).addBoth(result.append)
        if result and isinstance(result[0], Failure):
            result[0].raiseException()
        return result[0] if result else None

    def _start_listening(self) -> None:
        """Listen when not yet; a failure is logged, not raised: the sites keep serving without
        an admin endpoint (Caddy 2.6.2 exits instead)."""
        if self.port is not None or self.settings.endpoint is None:
            return
        try:
            self.port = self._listen(self.settings)
        except Exception as e:  # noqa: BLE001 - e.g. the address is in use
            self.log.error("admin endpoint not started on {address}: {error}", address=self.settings.listen,
                           error=str(e))
            return
        self.log.info("admin endpoint started on {address}", address=self.settings.listen)

    def privilegedStartService(self) -> None:  # noqa: N802 - Twisted's name
        super().privilegedStartService()
        self._start_listening()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        self._start_listening()
        super().startService()

    def stopService(self) -> Deferred[None] | None:  # noqa: N802 - Twisted's name
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return maybeDeferred(port.stopListening)
        return None

    def configure(self, admin: dict[str, Any] | None) -> None:
        """Apply a newly loaded config's ``admin`` settings (raises ConfigError: check first)."""
        settings = AdminSettings(admin)
        if settings.same_listener(self.settings) or not self.running:
            self.settings = settings
            return
        old = self.port
        try:
            self.port = self._listen(settings) if settings.endpoint is not None else None
        except Exception as e:  # noqa: BLE001 - the old endpoint keeps serving
            self.log.error("admin endpoint stays on {old}: cannot listen on {new}: {error}",
                           old=self.settings.listen, new=settings.listen, error=str(e))
            return
        self.settings = settings
        if old is not None:
            old.stopListening()


def _load_failed(failure: Failure) -> None:
    """Every failure to load or start a config is the client's 400 (Caddy's ``loading config``)."""
    error = failure.value
    if isinstance(error, AdminError):
        failure.raiseException()
    raise AdminError(400, f"loading config: {error}")


async def _nothing() -> None:
    return None


# Registered statuses twisted.web does not name (Go's text for them).
http.RESPONSES.setdefault(412, b"Precondition Failed")


#: Admin paths (Caddy's mux patterns) and the module that serves them (``admin`` for the
#: built-in ones), the labels of ``caddy_admin_http_requests_total``.
_PATTERNS = (
    ("/config/", "admin"), ("/id/", "admin"), ("/stop", "admin"), ("/load", "load"),
    ("/adapt", "load"), ("/pki/", "pki"), ("/reverse_proxy/upstreams", "reverse_proxy"),
    ("/metrics", "metrics"),
)


def _mux_pattern(path: str) -> tuple[str, str]:
    """(handler, pattern) of an admin request path; unknown paths count under ``/``."""
    for pattern, handler in _PATTERNS:
        if path == pattern or (pattern.endswith("/") and path.startswith(pattern)):
            return handler, pattern
    return "admin", "/"
