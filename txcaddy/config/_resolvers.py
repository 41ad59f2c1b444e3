"""Where each placeholder's value comes from: Caddy's ``Replacer`` value sources.

A placeholder's name picks its value source (a function of the request and the response)
once, when a template is built: global values (``env.*``, ``system.*``, ``time.*``) first,
then values set during the request (``request.placeholders`` and the ``http.error.*`` of an
error route), then the request's own values (``http.request.*``, ``http.vars.*``, TLS, …).
``txcaddy.config.placeholders`` is the public face; ``_template`` renders with these.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import ipaddress
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from txcaddy._go.http import remote_addr, request_cookies, request_uri, status_text
from txcaddy._go.net import AddrError, split_host_port
from txcaddy._go.netip import ParseAddrError, parse_addr
from txcaddy._go.path import base as path_base
from txcaddy._go.path import ext as path_ext
from txcaddy._go.path import split as path_split
from txcaddy._go.runtime import goarch, goos
from txcaddy._go.strconv import NumError, atoi
from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy._go.time import Duration, Time, zone_offset
from txcaddy._go.url import parse_query

# The clock behind ``{time.now*}`` and ``{http.request.duration}``; tests replace it
# (Caddy's ``nowFunc``). A module attribute, read at render time.
now: Callable[[], float] = time.time


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""What a value source returns for a placeholder it does not know."""

Resolver = Callable[[Any, Any], Any]  # (request, response) -> value or UNKNOWN

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def common_log_time(timestamp: float) -> str:
    """``02/Jan/2006:15:04:05 -0700`` in local time, locale-independent."""
    tm = time.localtime(timestamp)
    return (
        f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {zone_offset(tm)}"
    )



# -- value sources ------------------------------------------------------------------------


def _getcwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


_GLOBAL_EXACT: dict[str, Callable[[], Any]] = {
    "system.hostname": socket.gethostname,
    "system.slash": lambda: os.sep,
    "system.os": goos,
    "system.wd": _getcwd,
    "system.arch": goarch,
    "time.now": lambda: Time(now()),
    "time.now.common_log": lambda: common_log_time(now()),
    "time.now.year": lambda: str(time.localtime(now()).tm_year),
    "time.now.unix": lambda: str(int(now() // 1)),
    "time.now.unix_ms": lambda: str(int(now() * 1000 // 1)),
    # Caddy 2.7+: RFC 1123 time in GMT, as in the Date header
    "time.now.http": lambda: email.utils.formatdate(now(), usegmt=True),
}


def global_resolver(key: str) -> Resolver | None:
    """The value source of a global placeholder (needs no request); None for other names."""
    if key.startswith("env."):
        name = key[4:]
        return lambda request, response: os.environ.get(name, "")
    source = _GLOBAL_EXACT.get(key)
    if source is not None:
        return lambda request, response: source()
    return None


_global_resolver = global_resolver  # the older private name, still used by others


def _error_message(error: Any) -> str:
    """The message as given (an ``error`` directive's may be empty), else the cause's."""
    message = getattr(error, "message", "")
    if message:
        return message
    cause = getattr(error, "cause", None)
    return str(cause) if cause is not None else ""


def _error_string(error: Any) -> str:
    """Go's ``HandlerError.Error()``: ``{id=…} trace: HTTP 404: message``."""
    text = ""
    error_id = getattr(error, "id", "")
    if error_id:
        text += f"{{id={error_id}}}"
    trace = getattr(error, "trace", "")
    if trace:
        text += " " + trace
    status = getattr(error, "status", 0)
    if status:
        text += f": HTTP {status}"
    text += ": " + _error_message(error)
    return text.strip()


def _error_field(field: str) -> Callable[[Any], Any]:
    return {
        "status_code": lambda e: getattr(e, "status", 500),
        "status_text": lambda e: status_text(getattr(e, "status", 500)),
        "message": _error_message,
        "id": lambda e: getattr(e, "id", ""),
        "trace": lambda e: getattr(e, "trace", ""),
    }[field]


_ERROR_FIELDS = frozenset({"status_code", "status_text", "message", "id", "trace"})


#: Namespaces whose values a handler publishes lazily, as one object: instead of setting
#: every ``{namespace.*}`` value in ``request.placeholders`` per request (most are never
#: read), it stores an object under ``request.placeholders[namespace]`` whose
#: ``placeholder(name)`` gives ``{namespace.name}`` (or ``UNKNOWN``). A value set under the
#: full key still wins; the namespace alone is no placeholder. ``http.reverse_proxy``:
#: ``reverseproxy/handler.py``.
PROVIDED_NAMESPACES = ("http.reverse_proxy",)


def _provided_resolver(key: str) -> Resolver | None:
    for namespace in PROVIDED_NAMESPACES:
        if key == namespace:
            return lambda request, response: UNKNOWN
        if key.startswith(namespace) and key[len(namespace)] == ".":
            name = key[len(namespace) + 1:]

            def provided(request: Any, response: Any, _ns: str = namespace, _name: str = name) -> Any:
                placeholders = request.placeholders
                value = placeholders.get(key, UNKNOWN)
                if value is UNKNOWN:
                    provider = placeholders.get(_ns)
                    if provider is not None:
                        return provider.placeholder(_name)
                return value

            return provided
    return None


def _static_resolver(key: str) -> Resolver:
    """Values set during the request (Caddy's ``repl.Set``), then the error of an error route."""
    provided = _provided_resolver(key)
    if provided is not None:
        return provided
    if key == "http.error":

        def error_value(request: Any, response: Any) -> Any:
            value = request.placeholders.get(key, UNKNOWN)
            if value is UNKNOWN and request.error is not None:
                return _error_string(request.error)
            return value

        return error_value
    if key.startswith("http.error.") and key[11:] in _ERROR_FIELDS:
        field = _error_field(key[11:])

        def error_field(request: Any, response: Any) -> Any:
            value = request.placeholders.get(key, UNKNOWN)
            if value is UNKNOWN and request.error is not None:
                return field(request.error)
            return value

        return error_field
    return lambda request, response: request.placeholders.get(key, UNKNOWN)


def _request_uuid(request: Any) -> str:
    """One random UUID per request, made on first use (Caddy keeps it in the vars)."""
    value = request.vars.get("uuid")
    if value is None:
        value = str(uuid.uuid4())
        request.vars["uuid"] = value
    return value


def _host(request: Any, response: Any) -> str:
    host: str = request.host
    if ":" not in host:
        return host  # no port (the common case): what Go's failed split leaves
    try:
        return split_host_port(host)[0]
    except AddrError:
        return host


def _port(request: Any, response: Any) -> Any:
    """The port as a number when ``strconv.Atoi`` reads it, else as written."""
    host: str = request.host
    if ":" not in host:
        return ""
    try:
        port = split_host_port(host)[1]
        return atoi(port)
    except AddrError:
        return ""
    except NumError:
        return port


def _remote_host(request: Any, response: Any) -> str:
    remote = request.remote
    if remote and remote[0] and "[" not in remote[0] and "]" not in remote[0]:
        return remote[0]  # what splitting the joined ``ip:port`` gives back
    addr = remote_addr(request)
    try:
        return split_host_port(addr)[0]
    except AddrError:
        return addr


def _remote_port(request: Any, response: Any) -> Any:
    try:
        port = split_host_port(remote_addr(request))[1]
        return atoi(port)
    except AddrError:
        return ""
    except NumError:
        return port


def _duration(request: Any) -> Duration:
    return Duration(int(round((now() - request.start) * 1e9)))


def _body(request: Any, response: Any) -> str:
    """The request body, only when it already arrived whole and nobody consumes it."""
    body = request.body
    chunks = getattr(body, "_chunks", None)
    if body is None or chunks is None or not body.finished or getattr(body, "_consumer", None) is not None:
        return ""
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def _scheme(request: Any, response: Any) -> str:
    return "https" if request.tls is not None else "http"


_REQUEST_EXACT: dict[str, Resolver] = {
    "http.request.method": lambda rq, rs: rq.method,
    "http.request.scheme": _scheme,
    "http.request.proto": lambda rq, rs: rq.proto,
    "http.request.host": _host,
    "http.request.port": _port,
    "http.request.hostport": lambda rq, rs: rq.host,
    "http.request.remote": lambda rq, rs: remote_addr(rq),
    "http.request.remote.host": _remote_host,
    "http.request.remote.port": _remote_port,
    "http.request.uri": lambda rq, rs: request_uri(rq),
    "http.request.uri.path": lambda rq, rs: rq.path,
    "http.request.uri.path.file": lambda rq, rs: path_split(rq.path)[1],
    "http.request.uri.path.dir": lambda rq, rs: path_split(rq.path)[0],
    "http.request.uri.path.file.base": lambda rq, rs: _file_base(rq.path),
    "http.request.uri.path.file.ext": lambda rq, rs: path_ext(rq.path),
    "http.request.uri.query": lambda rq, rs: rq.query,
    "http.request.duration": lambda rq, rs: _duration(rq),
    "http.request.duration_ms": lambda rq, rs: (now() - rq.start) * 1e3,
    "http.request.uuid": lambda rq, rs: _request_uuid(rq),
    "http.request.body": _body,
    "http.request.orig_method": lambda rq, rs: rq.orig_method,
    "http.request.orig_uri": lambda rq, rs: rq.request_uri,
    "http.request.orig_uri.path": lambda rq, rs: rq.orig_path,
    "http.request.orig_uri.path.file": lambda rq, rs: path_split(rq.orig_path)[1],
    "http.request.orig_uri.path.dir": lambda rq, rs: path_split(rq.orig_path)[0],
    "http.request.orig_uri.query": lambda rq, rs: rq.orig_query,
    "http.shutting_down": lambda rq, rs: bool(getattr(rq.server, "shutdown_at", None)),
    "http.time_until_shutdown": lambda rq, rs: _time_until_shutdown(rq),
}


def _file_base(path: str) -> str:
    base = path_base(path)
    ext = path_ext(path)
    return base[: -len(ext)] if ext and base.endswith(ext) else base


def _time_until_shutdown(request: Any) -> Any:
    shutdown_at = getattr(request.server, "shutdown_at", None)
    if not shutdown_at:
        return None
    return Duration(int(round((shutdown_at - now()) * 1e9)))


def _header_resolver(field: str) -> Resolver:
    name = canonical_key(field)
    if name == "Host":
        # Go moves Host out of the header map into Request.Host
        return lambda request, response: ""
    return lambda request, response: request.headers.joined(name)


def _query_resolver(name: str) -> Resolver:
    def query_value(request: Any, response: Any) -> str:
        values, _ = parse_query(request.query)
        return ",".join(values.get(name, ()))

    return query_value


def _cookie_resolver(name: str) -> Resolver:
    folded = name.lower()

    def cookie(request: Any, response: Any) -> Any:
        if "Cookie" not in request.headers:
            return UNKNOWN
        for cookie_name, value in request_cookies(request.headers):
            if cookie_name.lower() == folded:
                return value
        return UNKNOWN  # Caddy falls through: a missing cookie is an unknown placeholder

    return cookie


def _vars_resolver(name: str) -> Resolver:
    def var(request: Any, response: Any) -> Any:
        value = request.vars.get(name)
        if value is None:
            if name == "uuid":
                return _request_uuid(request)
            if name == "start_time":
                return Time(request.start)
        return value

    return var


def _masked_remote_resolver(spec: str) -> Resolver:
    v4_text, comma, v6_text = spec.partition(",")

    def masked(request: Any, response: Any) -> str:
        host = _remote_host(request, response)
        try:
            address = parse_addr(host)[0]
        except ParseAddrError:
            return host
        try:
            bits = atoi(v6_text if address.version == 6 and comma else v4_text)
        except NumError:
            return ""
        if bits < 0 or bits > address.max_prefixlen:
            return ""
        network_type = ipaddress.IPv6Network if address.version == 6 else ipaddress.IPv4Network
        network = network_type((int(address), bits), strict=False)
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None:
            return f"::ffff:{mapped}/{bits}"  # Go writes IPv4-mapped addresses dotted
        return str(network)

    return masked


def _index(text: str) -> int | None:
    """A placeholder's index suffix (``.labels.0``): None unless Atoi reads it and it is >= 0."""
    try:
        index = atoi(text)
    except NumError:
        return None
    return index if index >= 0 else None


def _host_label_resolver(index_text: str) -> Resolver | None:
    index = _index(index_text)
    if index is None:
        return None

    def label(request: Any, response: Any) -> str:
        host = _host(request, response)
        labels = host.split(".")
        return labels[len(labels) - index - 1] if index < len(labels) else ""

    return label


def _path_part_resolver(index_text: str) -> Resolver | None:
    index = _index(index_text)
    if index is None:
        return None

    def part(request: Any, response: Any) -> str:
        parts = request.path.split("/")
        if parts and parts[0] == "":
            parts = parts[1:]
        return parts[index] if index < len(parts) else ""

    return part


def _response_header_resolver(field: str) -> Resolver:
    name = canonical_key(field)

    def header(request: Any, response: Any) -> Any:
        if response is None:
            return UNKNOWN
        return response.headers.joined(name)

    return header


def _request_resolver(key: str) -> Resolver | None:
    """The value source of a request/response placeholder; None when Caddy does not know it."""
    if key.startswith("http.request.uri.query."):
        return _query_resolver(key[23:])
    if key.startswith("http.request.header."):
        return _header_resolver(key[20:])
    if key.startswith(">") and len(key) > 1:
        return _header_resolver(key[1:])  # txcaddy: Caddy v1's request-header shorthand
    if key.startswith("http.request.cookie."):
        return _cookie_resolver(key[20:])
    if key.startswith("http.request.tls."):
        return _tls_resolver(key[17:].lower())
    exact = _REQUEST_EXACT.get(key)
    if exact is not None:
        return exact
    if key.startswith("http.request.remote.host/"):
        return _masked_remote_resolver(key[key.index("/") + 1 :])
    if key.startswith("http.request.host.labels."):
        return _host_label_resolver(key[25:])
    if key.startswith("http.request.uri.path."):
        return _path_part_resolver(key[22:])
    if key.startswith("http.vars."):
        return _vars_resolver(key[10:])
    if key.startswith("http.response.header."):
        return _response_header_resolver(key[21:])
    return None


# -- TLS ------------------------------------------------------------------------------------


def _peer_certificate(tls: Any) -> Any:
    cert = getattr(tls, "peer_certificate", None)
    if cert is not None and hasattr(cert, "to_cryptography"):
        cert = cert.to_cryptography()  # pyOpenSSL X509
    return cert


def _public_key_bytes(cert: Any) -> bytes | None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return None


def _der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _sans(cert: Any, kind: str) -> list[Any]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    general = {
        "dns_names": x509.DNSName,
        "emails": x509.RFC822Name,
        "ips": x509.IPAddress,
        "uris": x509.UniformResourceIdentifier,
    }[kind]
    return [str(v) for v in extension.get_values_for_type(general)]


def _client_cert_value(cert: Any, field: str) -> Any:
    if field.startswith("client.san."):
        rest = field[11:]
        for kind in ("dns_names", "emails", "ips", "uris"):
            if rest.startswith(kind):
                rest = rest[len(kind) :]
                break
        else:
            return UNKNOWN
        values = _sans(cert, kind)
        if rest == "":
            return values
        if len(rest) < 2 or rest[0] != ".":
            return UNKNOWN
        index = _index(rest[1:])
        if index is None:
            return UNKNOWN
        return values[index] if index < len(values) else None
    if field == "client.fingerprint":
        return hashlib.sha256(_der(cert)).hexdigest()
    if field in ("client.public_key", "client.public_key_sha256"):
        key_bytes = _public_key_bytes(cert)
        if key_bytes is None:
            return None
        return hashlib.sha256(key_bytes).hexdigest() if field.endswith("_sha256") else key_bytes.hex()
    if field == "client.issuer":
        return cert.issuer.rfc4514_string()
    if field == "client.subject":
        return cert.subject.rfc4514_string()
    if field == "client.serial":
        return str(cert.serial_number)
    if field == "client.certificate_pem":
        der = base64.b64encode(_der(cert)).decode("ascii")
        lines = [der[i : i + 64] for i in range(0, len(der), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    if field == "client.certificate_der_base64":
        return base64.b64encode(_der(cert)).decode("ascii")
    return UNKNOWN


_TLS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "version": lambda tls: getattr(tls, "version", ""),
    "cipher_suite": lambda tls: getattr(tls, "cipher_suite", ""),
    "resumed": lambda tls: bool(getattr(tls, "resumed", False)),
    "proto": lambda tls: getattr(tls, "proto", ""),
    "proto_mutual": lambda tls: True,
    "server_name": lambda tls: getattr(tls, "server_name", ""),
}


def _tls_resolver(field: str) -> Resolver:
    if field.startswith("client."):

        def client(request: Any, response: Any) -> Any:
            tls = request.tls
            if tls is None:
                return UNKNOWN
            cert = _peer_certificate(tls)
            if cert is None:
                return UNKNOWN
            return _client_cert_value(cert, field)

        return client
    source = _TLS_FIELDS.get(field)

    def connection(request: Any, response: Any) -> Any:
        tls = request.tls
        if tls is None or source is None:
            return UNKNOWN
        return source(tls)

    return connection


# -- resolvers by name ---------------------------------------------------------------------

#: The ``request.placeholders`` key holding value sources handlers add during a request
#: (Caddy's ``Replacer.Map``, used by ``map``): each is called as ``source(key, request,
#: response)`` and gives the value or ``UNKNOWN``. They come last, after the values set
#: during the request and the request's own, in the order they were added, as Caddy
#: appends its providers. The NUL keeps the name out of reach of any placeholder.
MAPPED = "\x00mapped"


def add_mapped(request: Any, source: Callable[[str, Any, Any], Any]) -> None:
    """Add a lazy value source consulted for names nothing else knows (``Replacer.Map``)."""
    sources = request.placeholders.get(MAPPED)
    if sources is None:
        request.placeholders[MAPPED] = [source]
    else:
        sources.append(source)


def _mapped(key: str, request: Any, response: Any) -> Any:
    sources = request.placeholders.get(MAPPED)
    if sources:
        for source in sources:
            value = source(key, request, response)
            if value is not UNKNOWN:
                return value
    return UNKNOWN


def _layered(key: str, static: Resolver, computed: Resolver | None) -> Resolver:
    """Values set during the request, then the request's own, then the mapped sources."""
    if computed is None:

        def set_or_mapped(request: Any, response: Any) -> Any:
            value = static(request, response)
            if value is UNKNOWN and request.placeholders:
                return _mapped(key, request, response)
            return value

        return set_or_mapped

    def layered(request: Any, response: Any) -> Any:
        if request.placeholders or request.error is not None:
            value = static(request, response)
            if value is not UNKNOWN:
                return value
            value = computed(request, response)
            if value is UNKNOWN and request.placeholders:
                return _mapped(key, request, response)
            return value
        return computed(request, response)

    return layered


#: The installed ``IPlaceholderProvider`` plugins, found on first need (a name nothing
#: built in knows, at template build time): None until then. Longest prefix first.
_providers: list[Any] | None = None


def placeholder_providers() -> list[Any]:
    """The ``IPlaceholderProvider`` plugins, found once (``reset_placeholder_providers``
    forgets them, and the resolvers built with them, for tests)."""
    global _providers
    if _providers is None:
        from twisted.plugin import getPlugins

        from txcaddy.errors import ConfigError
        from txcaddy.interfaces import IPlaceholderProvider

        found = []
        for provider in getPlugins(IPlaceholderProvider):
            prefix = getattr(provider, "prefix", None)
            if not isinstance(prefix, str) or not prefix or not callable(getattr(provider, "resolve", None)):
                raise ConfigError(
                    f"placeholder plugin {provider!r} must have a non-empty string 'prefix' and "
                    "a resolve(request, name) method (IPlaceholderProvider)"
                )
            found.append(provider)
        found.sort(key=lambda p: -len(p.prefix))
        _providers = found
    return _providers


def reset_placeholder_providers() -> None:
    """Forget the providers found and every resolver built so far."""
    global _providers
    _providers = None
    _resolver_cache.clear()


def _plugin_resolver(key: str) -> Resolver | None:
    """A plugin's value source for ``{<prefix>.<name>}``, None when no plugin claims ``key``."""
    for provider in placeholder_providers():
        prefix = provider.prefix + "."
        if key.startswith(prefix) and len(key) > len(prefix):
            return _plugin_value(provider.resolve, key[len(prefix):])
    return None


def _plugin_value(resolve: Callable[[Any, str], Any], name: str) -> Resolver:
    def plugin_value(request: Any, response: Any) -> Any:
        value = resolve(request, name)
        return UNKNOWN if value is None else value

    return plugin_value


_resolver_cache: dict[str, Resolver] = {}


def resolver(key: str) -> Resolver:
    """The function giving ``key``'s value for a request (UNKNOWN when unknown), in Caddy's order."""
    cached = _resolver_cache.get(key)
    if cached is not None:
        return cached
    found = global_resolver(key)
    if found is None:
        computed = _request_resolver(key)
        if computed is None:
            # only names nothing built in knows, and only here, at template build time
            computed = _plugin_resolver(key)
        found = _layered(key, _static_resolver(key), computed)

    if len(_resolver_cache) < 8192:
        _resolver_cache[key] = found
    return found


def lookup(key: str, request: Any, response: Any = None) -> tuple[Any, bool]:
    """Caddy's ``Replacer.Get``: the raw value of ``key`` and whether it is known."""
    value = resolver(key)(request, response)
    if value is UNKNOWN:
        return None, False
    return value, True
