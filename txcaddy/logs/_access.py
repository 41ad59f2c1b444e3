"""HTTP access and error logs: a server's ``ServerLogger`` and the request object it logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.x509.oid import NameOID

from txcaddy._go.net import AddrError, split_host_port
from txcaddy.logs._values import Duration, Plain, StringArray
from txcaddy.tls._names import CIPHER_SUITE_IDS, VERSION_IDS
from txcaddy.tls.names import match_wildcard

if TYPE_CHECKING:
    from txcaddy.logs._system import LogSystem

_CREDENTIAL_HEADERS = frozenset(("Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization"))
_FRAMING_HEADERS = ("Content-Length", "Transfer-Encoding", "Connection")
_RECORD = "access_log_record"  # the request attribute holding what begin() recorded
_FAILED = "access_log_chain_failed"  # set when the server's handler chain failed

def _wire_text(text: str) -> str:
    """Request bytes (held as latin-1 text) as the UTF-8 zap writes, invalid bytes as U+FFFD."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _tls_number(value: Any, table: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return table.get(value, table.get(value.lower(), 0))
    return 0


def _tls_object(tls: Any) -> Plain:
    out = Plain({
        "resumed": bool(getattr(tls, "resumed", False)),
        "version": _tls_number(getattr(tls, "version", 0), VERSION_IDS),
        "cipher_suite": _tls_number(getattr(tls, "cipher_suite", 0), CIPHER_SUITE_IDS),
        "proto": str(getattr(tls, "proto", "") or ""),
        "server_name": str(getattr(tls, "server_name", "") or ""),
    })
    certificate = getattr(tls, "peer_certificate", None)
    if certificate is not None:
        if hasattr(certificate, "to_cryptography"):
            certificate = certificate.to_cryptography()
        try:
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            out["client_common_name"] = str(names[0].value) if names else ""
            out["client_serial"] = str(certificate.serial_number)
        except AttributeError:  # not an X.509 certificate: no client name or serial
            pass
    return out


def _header_object(headers: Any, credentials: bool, skip: tuple[str, ...] = ()) -> Plain:
    out = Plain()
    for name in headers.names():  # canonical names
        if name in skip:
            continue
        if not credentials and name in _CREDENTIAL_HEADERS:
            out[name] = StringArray()
            continue
        values = headers.get_all(name)
        for value in values:
            if not value.isascii():
                values = [_wire_text(v) for v in values]
                break
        out[name] = StringArray(values)
    return out


def request_object(request: Any, credentials: bool = False) -> Plain:
    """Caddy's ``LoggableHTTPRequest`` of the request as it is now."""
    ip, port = request.remote or ("", 0)
    out = Plain({
        "remote_ip": ip or "",
        "remote_port": str(port) if (ip or port) else "",
        "proto": request.proto,
        "method": request.method,
        "host": _wire_text(request.host),
        "uri": _wire_text(request.request_uri),
        # Go keeps Host and Transfer-Encoding out of the header map
        "headers": _header_object(request.headers, credentials, ("Host", "Transfer-Encoding")),
    })
    if request.tls is not None:
        out["tls"] = _tls_object(request.tls)
    return out


class _Record:
    """What is logged about a request from before its handlers ran."""

    __slots__ = ("request", "logger", "unwritten", "resp_headers", "framing")

    def __init__(self, request: Plain, logger: str) -> None:
        self.request = request
        self.logger = logger
        self.unwritten = False  # the handler chain ended without writing a response
        self.resp_headers: Plain | None = None
        self.framing: tuple[str, ...] = _FRAMING_HEADERS  # framing fields a handler set itself

    def head(self, response: Any, status: int) -> int:
        headers = response.headers
        self.framing = tuple(name for name in _FRAMING_HEADERS if name in headers)
        return status


class ServerLogger:
    """A server's access and error logging, from its ``logs`` object (Caddy's ``ServerLogConfig``).

    Called by the server after each response (``access_log``). Without a
    ``logs`` object only handler errors are logged (``http.log.error``).
    """

    def __init__(self, system: LogSystem, config: dict[str, Any] | None, *, error_routes: bool = False) -> None:
        self.system = system
        self.access = config is not None
        config = config or {}
        self.default_name = str(config.get("default_logger_name") or "")
        self.logger_names = {str(k): str(v or "") for k, v in (config.get("logger_names") or {}).items()}
        self.skip_hosts = [str(h) for h in config.get("skip_hosts") or ()]
        self.skip_unmapped_hosts = bool(config.get("skip_unmapped_hosts"))
        self.credentials = bool(config.get("should_log_credentials"))
        self.error_routes = error_routes
        self._names: dict[str, str] = {}

    # -- which requests, which logger ------------------------------------------------------

    def should_log(self, host: str) -> bool:
        if host in self.logger_names:
            return True
        for skipped in self.skip_hosts:
            if match_wildcard(host, skipped):
                return False
        return not self.skip_unmapped_hosts

    def logger_suffix(self, host: str) -> str:
        """``.NAME`` for the request's host (exact, without port, then wildcards), or ``""``."""
        suffix = self._names.get(host)
        if suffix is None:
            name = self._lookup_name(host)
            suffix = "." + name if name else ""
            if len(self._names) > 1024:
                self._names.clear()
            self._names[host] = suffix
        return suffix

    def _lookup_name(self, host: str) -> str:
        names = self.logger_names

        def try_host(key: str) -> str | None:
            if key in names:
                return names[key]
            try:
                return names.get(split_host_port(key)[0])
            except AddrError:
                return None

        if names:
            found = try_host(host)
            if found is not None:
                return found
            labels = host.split(".")
            for i, label in enumerate(labels):
                if not label:
                    continue
                labels[i] = "*"
                found = try_host(".".join(labels))
                if found is not None:
                    return found
        return self.default_name

    # -- the request's life ------------------------------------------------------------------

    def begin(self, request: Any, response: Any) -> None:
        """Record the request as it arrived (Caddy encodes it before the handlers run)."""
        if not self.access:
            return
        host = request.host
        if not self.should_log(host):
            return
        logger = "http.log.access" + self.logger_suffix(host)
        system = self.system
        if not system.enabled(logger, "error"):  # a log that takes info takes error too
            return
        record = _Record(request_object(request, self.credentials), logger)
        setattr(request, _RECORD, record)
        response.on_head(record.head)

    def chain_done(self, request: Any, response: Any) -> None:
        """The handler chain returned: a response nobody wrote is logged with status 0, as Caddy's."""
        record = getattr(request, _RECORD, None)
        if record is not None and not response.head_sent:
            record.unwritten = True
            record.resp_headers = _header_object(response.headers, self.credentials)

    def chain_failed(self, request: Any) -> None:
        """The server's handler chain failed (an error a subroute handled itself is not this)."""
        request.__dict__[_FAILED] = True

    def finished(self, request: Any, response: Any, *, timed: bool = True, log_error: bool = True) -> None:
        """The response is complete (or cut off): write the access (and error) entries.

        An aborted request passes ``timed=False`` where Caddy's panic leaves
        the duration 0, and ``log_error=False`` where it skips the error entry.
        """
        state = request.__dict__
        record = state.pop(_RECORD, None)
        failed = state.pop(_FAILED, False)
        error = request.error if failed and log_error else None
        if record is None and error is None:
            return
        now = self.system.clock()
        duration = Duration(round((now - request.start) * 1e9) if timed else 0)
        if error is not None:
            self._log_error(request, record, error, duration, now)
        if record is None or request.vars.get("skip_log") is True:
            return
        if record.unwritten:
            status, size = 0, 0
            resp_headers = record.resp_headers or Plain()
        else:
            status, size = response.status, response.size
            resp_headers = _header_object(response.headers, self.credentials)
            for name in _FRAMING_HEADERS:
                if name in resp_headers and name not in record.framing:
                    del resp_headers[name]  # added by the protocol, not in Go's header map
        level = "error" if status >= 400 else "info"
        if not self.system.enabled(record.logger, level):
            return
        user = request.placeholders.get("http.auth.user.id", "")
        fields = [
            ("request", record.request),
            ("user_id", user if user.__class__ is str else str(user)),
            ("duration", duration),
            ("size", size),
            ("status", status),
            ("resp_headers", resp_headers),
        ]
        self.system.emit(record.logger, level, "handled request", fields, now)

    def _log_error(self, request: Any, record: _Record | None, error: Any, duration: Duration, now: float) -> None:
        status = getattr(error, "status", 500)
        if self.error_routes:
            level = "debug"  # the error routes answered it
        else:
            level = "error" if status >= 500 else "debug"
        logger = "http.log.error" + (self.logger_suffix(request.host) if self.access else "")
        if not self.system.enabled(logger, level):
            return
        message = getattr(error, "message", None)
        if message is None:
            message = str(error)
        elif not message and getattr(error, "cause", None) is not None:
            message = str(error.cause)
        fields = [
            ("request", record.request if record is not None else _original_request_object(request, self.credentials)),
            ("duration", duration),
            ("status", status),
            ("err_id", str(getattr(error, "id", "") or "")),
            ("err_trace", str(getattr(error, "trace", "") or "")),
        ]
        self.system.emit(logger, level, message, fields, now)


def _original_request_object(request: Any, credentials: bool) -> Plain:
    out = request_object(request, credentials)
    out["method"] = request.orig_method
    return out
