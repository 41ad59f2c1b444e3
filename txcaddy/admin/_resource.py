"""The ``twisted.web`` half of the admin endpoint: the resource and request classes.

Kept apart from ``_server`` so that a process that never serves the admin API (``admin off``,
every worker of the worker mode) never imports ``twisted.web`` (``server``, ``http`` and
``resource`` pull in ``http.cookiejar``, ``urllib.request`` and more: MBs of RSS per process).
``AdminService`` imports this module when its endpoint first listens. The routes follow Caddy
2.6.2's ``admin.go``, ``caddyconfig/load.go``, ``reverseproxy/admin.go`` and
``caddypki/adminapi.go``; see ``_server`` for where txcaddy differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from txcaddy.admin import _paths, _server
from txcaddy.admin._server import AdminError, _adapt_body, _mux_pattern, _warning_json
from txcaddy.errors import ConfigError
from txcaddy.metrics import Metrics

if TYPE_CHECKING:
    from txcaddy.admin._server import AdminService


def make_site(admin: AdminService) -> server.Site:
    """The ``Site`` serving ``admin``'s API (bodies capped, no tracebacks in answers)."""
    site = server.Site(AdminResource(admin))
    site.requestFactory = _LimitedRequest
    site.displayTracebacks = False
    return site


class _LimitedRequest(server.Request):
    """A request whose body is dropped (and answered with 413) past ``MAX_BODY`` bytes."""

    too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        if length is not None and length > _server.MAX_BODY:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._received += len(data)
        if self._received > _server.MAX_BODY:
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
            raise AdminError(413, f"request body too large (limit {_server.MAX_BODY} bytes)")

    # -- routing ----------------------------------------------------------------------------

    def _dispatch(self, request: server.Request) -> Any:
        self._check(request)
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        if method == "OPTIONS" and self.admin.settings.enforce_origin:
            request.setHeader(b"access-control-allow-methods", _server.ALLOW_METHODS.encode())
            request.setHeader(b"access-control-allow-headers", _server.ALLOW_HEADERS.encode())
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


# Registered statuses twisted.web does not name (Go's text for them).
http.RESPONSES.setdefault(412, b"Precondition Failed")
