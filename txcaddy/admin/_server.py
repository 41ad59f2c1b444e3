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

The admin server is not on the hot path: ``twisted.web`` keeps it small and plain. The
``twisted.web`` classes live in ``_resource``, imported only when the endpoint first listens.
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

from txcaddy.admin import _paths
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.formatter import format_caddyfile
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.metrics import Metrics, render_metrics

if TYPE_CHECKING:
    from twisted.web import server

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
        self._site: server.Site | None = None
        self.port: Any = None
        #: More endpoints by exact path: ``handler(request, method)`` returns the body (bytes),
        #: None, or a Deferred of either; raise ``AdminError`` for an error answer.
        self.routes: dict[str, Callable[[server.Request, str], Any]] = {"/metrics": self._metrics}

    def _metrics(self, request: server.Request, method: str) -> bytes:
        """The service's metrics in Prometheus' text format (Caddy's ``admin.api.metrics``)."""
        body, content_type = render_metrics(self.service.runtime.get(Metrics).registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body

    @property
    def site(self) -> server.Site:
        """The admin API's ``Site``, built on first use: ``twisted.web`` (MBs of RSS) is imported
        only by a process whose admin endpoint listens, never under ``admin off`` or in a worker."""
        if self._site is None:
            from txcaddy.admin._resource import make_site

            self._site = make_site(self)
        return self._site

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
