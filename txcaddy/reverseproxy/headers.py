"""The header rules of ``reverse_proxy``: what goes upstream, what comes back.

Caddy 2.6.2's behaviour (``prepareRequest``, ``addForwardedHeaders``, ``finalizeResponse``)
plus the parts of Go's ``net/http`` client that shape the wire: which fields it writes and
how, transparent gzip, and how it reads a response's ``Trailer`` announcement.

Per client request::

    prepared, upgrade = prepare_upstream_headers(request, trusted)

Per attempt (after an upstream is chosen and its placeholders are published)::

    headers = prepared.copy()
    if header_up is not None:
        apply_request_ops(header_up, headers, request)
    reapply_upgrade(headers, upgrade)
    fields = to_raw(headers, default_host=dial_hostport)
    gzip = compression and wants_gzip(headers, method)
    if gzip:
        fields.append(ACCEPT_GZIP)

On the response head::

    headers = Headers.from_raw(head.headers)
    names = announced_trailers(headers)      # before cleaning: Trailer is hop-by-hop
    gunzip = gzip and gunzip_response_headers(headers, head.status)
    clean_response_headers(headers)
    (header_down ops, copy onto the client response, then add
     "Trailer: " + ", ".join(names) when names)

and at the end of the body ``relay_trailers(raw_trailers)`` gives what the client gets.
Everything here is a plain function of its arguments: no I/O, nothing per request that a
config load could have done.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from txcaddy._go.netip import Network, ParseAddrError, parse_addr, parse_prefix
from txcaddy._go.strconv import quote
from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy.errors import ConfigError
from txcaddy.http.headers import Headers
from txcaddy.reverseproxy.transport import RawHeaders, UpstreamError, UpstreamProtocolError

__all__ = [
    "ACCEPT_GZIP",
    "HOP_BY_HOP",
    "BadTrailerKey",
    "ForwardedHeadersError",
    "InvalidHeaderField",
    "TrustedProxies",
    "announced_trailers",
    "apply_request_ops",
    "clean_response_headers",
    "from_raw",
    "gunzip_response_headers",
    "prepare_upstream_headers",
    "reapply_upgrade",
    "relay_trailers",
    "to_raw",
    "upgrade_accepted",
    "upgrade_type",
    "wants_gzip",
]

#: Hop-by-hop fields (Caddy's list, RFC 2616 §13.5.1 plus Alt-Svc and Proxy-Connection):
#: never forwarded in either direction.
HOP_BY_HOP = frozenset((
    "Alt-Svc",
    "Connection",
    "Proxy-Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Te",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
))

# Left out of the upstream copy besides the hop-by-hop fields: the framing comes from the
# body the proxy sends, and Host is rebuilt from ``request.host`` (Go keeps it apart).
_REQUEST_DROP = HOP_BY_HOP | {"Content-Length", "Host"}

#: The field Go's transport adds when it asks for a transparently decoded response.
ACCEPT_GZIP = (b"Accept-Encoding", b"gzip")

_FORWARDED = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")

# Never written from the header map by Go's request writer: Host and User-Agent are written
# on their own, the framing fields come from the body, Trailer from the request trailers.
_NOT_WRITTEN = frozenset(("Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer"))

# Header values: any control character but horizontal tab is refused (Go's
# httpguts.ValidHeaderFieldValue); this also keeps CR/LF from splitting the request.
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_name_bytes: dict[str, bytes] = {}  # canonical field name → its bytes (valid tokens only)


class ForwardedHeadersError(ValueError):
    """The peer address is not an IP address: Caddy fails the request with 500."""


class InvalidHeaderField(UpstreamError):
    """A field (after ``header_up``) cannot be written: Go's transport refuses to send it."""

    status = 502


class BadTrailerKey(UpstreamProtocolError):
    """The upstream announced a trailer that may not be one (Go refuses the response)."""


# -- trusted proxies ----------------------------------------------------------------------


class TrustedProxies:
    """``trusted_proxies``: the peers whose X-Forwarded-* fields are believed.

    Parsed once at load time with Go's address rules (so the same entries are accepted and
    refused, with the same messages). Answers per peer address are cached, so a request
    costs one dict lookup; the empty list (the default) answers False at once.
    """

    __slots__ = ("networks", "_answers")

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        self._answers: dict[str, bool] = {}

    @classmethod
    def from_config(cls, entries: Any) -> TrustedProxies:
        """From the handler's JSON ``trusted_proxies`` (None or a list of IPs and CIDRs)."""
        if entries is None:
            return cls()
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError("reverse_proxy: trusted_proxies must be a list of strings")
        networks: list[Network] = []
        for entry in entries:
            if "/" in entry:
                try:
                    networks.append(parse_prefix(entry))
                except ParseAddrError as exc:
                    raise ConfigError(f"parsing CIDR expression: '{entry}': {exc}") from None
            else:
                try:
                    addr, _zone = parse_addr(entry)  # a zone is dropped, as Go's PrefixFrom does
                except ParseAddrError as exc:
                    raise ConfigError(f"invalid IP address: '{entry}': {exc}") from None
                networks.append(ipaddress.ip_network(addr))
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    def trusts(self, ip: str) -> bool:
        """Whether the peer ``ip`` (no port, no zone) is a trusted proxy.

        Raises ``ForwardedHeadersError`` when ``ip`` is not an IP address at all. As in Go,
        an IPv4 range never contains an IPv4-mapped IPv6 address, nor the reverse.
        """
        answer = self._answers.get(ip)
        if answer is not None:
            return answer
        try:
            addr, _zone = parse_addr(ip)
        except ParseAddrError as exc:
            raise ForwardedHeadersError(f"invalid IP address: '{ip}': {exc}") from None
        answer = any(addr in network for network in self.networks)
        if len(self._answers) >= 4096:
            self._answers.clear()
        self._answers[ip] = answer
        return answer


_NO_PROXIES = TrustedProxies()


# -- the upstream request -------------------------------------------------------------------


def _has_token(values: list[str], token: str) -> bool:
    """Go's ``httpguts.HeaderValuesContainsToken`` (``token`` given in lower case)."""
    for value in values:
        for part in value.split(","):
            part = part.strip(" \t")
            if part.isascii() and part.lower() == token:
                return True
    return False


def upgrade_type(headers: Headers) -> str:
    """The protocol an upgrade asks for (lower-cased ``Upgrade``), or "" if not an upgrade."""
    connection = headers.values_of("Connection")
    if not connection or not _has_token(connection, "upgrade"):
        return ""
    return (headers.first("Upgrade") or "").lower()


def prepare_upstream_headers(
    request: Any, trusted: TrustedProxies = _NO_PROXIES,
) -> tuple[Headers, str | None]:
    """The request's fields as the upstream gets them, and the upgrade token (or None).

    Done once per client request (retries reuse a copy): fields named in ``Connection`` and
    the hop-by-hop fields go (``Te`` survives as ``Te: trailers`` when the client's TE named
    ``trailers``), an upgrade keeps ``Connection: Upgrade`` and its lower-cased ``Upgrade``,
    X-Forwarded-For/-Proto/-Host are set (trusting the client's values only from a trusted
    peer), ``Host`` is ``request.host``. Content-Length is left out: the proxy frames the
    body it sends. Raises ``ForwardedHeadersError`` for a peer that is not an IP address.
    The result shares value lists with ``request.headers``: ``copy()`` it before ``add``.
    """
    source = request.headers
    connection = "\n".join(source.values_of("Connection") or ())
    upgrade: str | None = None
    if connection:
        drop, _, asks_upgrade, lists_te = _connection_rule(connection)
        if asks_upgrade:
            upgrade = (source.first("Upgrade") or "").lower() or None
    else:
        drop, lists_te = _REQUEST_DROP, False
    # Shared value lists: below, fields are only replaced; header_up ops work on a copy().
    headers = source.view_without(drop)
    if request.host:
        headers.set_canonical("Host", request.host)
    # Go removes the Connection-named fields first: "Connection: TE" takes TE with it.
    if not lists_te and source.values_of("Te") is not None:
        if _has_token(source.get_all("Te"), "trailers"):
            headers.set_canonical("Te", "trailers")
    if upgrade:
        headers.set_canonical("Connection", "Upgrade")
        headers.set_canonical("Upgrade", upgrade)
    _add_forwarded(headers, request, trusted)
    return headers, upgrade


_Rule = tuple[frozenset[str], frozenset[str], bool, bool]
_connection_rules: dict[str, _Rule] = {}


def _connection_rule(connection: str) -> _Rule:
    """What a message's Connection values (joined by newlines) imply: the fields to leave out
    of a request's upstream copy, those to remove from a response, whether it asks for an
    upgrade, whether it names TE. Cached: the same few values recur."""
    rule = _connection_rules.get(connection)
    if rule is None:
        listed = set()
        for value in connection.split("\n"):
            for name in value.split(","):
                name = name.strip(" \t\r\n")
                if name:
                    listed.add(canonical_key(name))
        rule = (_REQUEST_DROP | listed, HOP_BY_HOP | listed,
                _has_token(connection.split("\n"), "upgrade"), "Te" in listed)
        if len(_connection_rules) >= 1024:
            _connection_rules.clear()
        _connection_rules[connection] = rule
    return rule


def _add_forwarded(headers: Headers, request: Any, trusted: TrustedProxies) -> None:
    ip = request.remote[0] if request.remote else ""
    if not ip:
        # No address to vouch for (e.g. a unix socket peer): send none of the three rather
        # than anything the client made up.
        for name in _FORWARDED:
            headers.delete(name)
        return
    if "%" in ip:
        ip = ip.partition("%")[0]
    is_trusted = trusted.trusts(ip)
    forwarded_for = ip
    if is_trusted:
        prior = ", ".join(headers.values_of("X-Forwarded-For") or ())
        if prior:
            forwarded_for = prior + ", " + ip
    headers.set_canonical("X-Forwarded-For", forwarded_for)
    proto = "http" if request.tls is None else "https"
    host = request.host
    if is_trusted:
        values = headers.values_of("X-Forwarded-Proto")
        if values and values[-1]:
            proto = values[-1]
        values = headers.values_of("X-Forwarded-Host")
        if values and values[-1]:
            host = values[-1]
    headers.set_canonical("X-Forwarded-Proto", proto)
    headers.set_canonical("X-Forwarded-Host", host)


def apply_request_ops(ops: Any, headers: Headers, request: Any) -> str:
    """Run ``header_up`` operations (a ``HeaderOps``) on prepared headers; return the Host.

    ``Host`` takes part as a field, as in Caddy: ``header_up Host x`` replaces it, ``+Host``
    appends (the last value wins), ``-Host`` removes it, and the upstream then gets the dial
    address (``to_raw``'s ``default_host``). Placeholders render against the client
    ``request`` (so ``{>Connection}`` is the client's Connection field) and its
    ``placeholders`` (``{http.reverse_proxy.upstream.hostport}`` once published).
    Returns the Host to send, "" when there is none.
    """
    if "Host" not in headers:
        headers.set("Host", "")
    ops.apply(headers, request)
    hosts = headers.get_all("Host")
    host = hosts[-1] if hosts else ""
    if host:
        headers.set("Host", host)
    else:
        headers.delete("Host")
    return host


def reapply_upgrade(headers: Headers, upgrade: str | None) -> None:
    """Give an upgrade request back its ``Connection: Upgrade`` / ``Upgrade`` after ops.

    txcaddy's deliberate difference (DESIGN §1): ``header_up Connection {>Connection}``
    from the tutorial would otherwise replace them and break the handshake.
    """
    if upgrade:
        headers.set("Connection", "Upgrade")
        headers.set("Upgrade", upgrade)


def wants_gzip(headers: Headers, method: str) -> bool:
    """Whether Go's transport would add ``Accept-Encoding: gzip`` (and decode the answer).

    Only when the request (after ``header_up``) has no non-empty Accept-Encoding and no
    Range, and is not HEAD. The caller appends ``ACCEPT_GZIP`` to the ``to_raw`` fields.
    """
    return method != "HEAD" and not headers.first("Accept-Encoding") and not headers.first("Range")


def _clean_host(host: str) -> str:
    """Go's ``cleanHost``: cut at a space or slash, non-ASCII names as punycode."""
    for stop in (" ", "/"):
        if stop in host:
            host = host.partition(stop)[0]
    if not host.isascii():
        name, colon, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        try:
            host = name.encode("idna").decode("ascii") + colon + port
        except UnicodeError:
            pass
    return host


def _encode_value(value: str) -> bytes:
    # Values from the wire were decoded as latin-1: this gives back the same bytes. Text
    # from the config beyond latin-1 goes out as UTF-8, as Go writes strings.
    try:
        return value.strip(" \t").encode("latin-1")
    except UnicodeEncodeError:
        return value.strip(" \t").encode("utf-8")


def _encode_name(name: str) -> bytes:
    encoded = _name_bytes.get(name)
    if encoded is None:
        if not _TOKEN.fullmatch(name):
            raise InvalidHeaderField(f"net/http: invalid header field name {quote(name)}")
        encoded = name.encode("ascii")
        if len(_name_bytes) < 4096:
            _name_bytes[name] = encoded
    return encoded


def to_raw(headers: Headers, default_host: str = "") -> RawHeaders:
    """The upstream request's fields as bytes, written the way Go's client writes them.

    ``Host`` first (the headers' Host, else ``default_host``, the dial address), then
    ``User-Agent`` (its first value, none if empty: Caddy never adds Go's default), then
    every other field except Content-Length, Transfer-Encoding and Trailer (the framing is
    the pool's business). Values are trimmed of spaces and tabs. Raises
    ``InvalidHeaderField`` for a name that is not a token or a value with control
    characters (what Go's transport refuses to send: a 502).
    """
    host = headers.first("Host") or default_host
    fields: RawHeaders = []
    if host:
        fields.append((b"Host", _encode_value(_clean_host(host))))
    agent = headers.first("User-Agent")
    if agent:
        fields.append((b"User-Agent", _encode_value(agent)))
    names = _name_bytes
    for name, values in headers.lists():
        if name in _NOT_WRITTEN:
            continue
        encoded = names.get(name) or _encode_name(name)
        for value in values:
            try:
                data = value.strip(" \t").encode("latin-1")
            except UnicodeEncodeError:
                data = value.strip(" \t").encode("utf-8")
            fields.append((encoded, data))
    if _CTL.search(b"\t".join([value for _, value in fields])):
        for name_bytes, value_bytes in fields:
            if _CTL.search(value_bytes):
                raise InvalidHeaderField(
                    "net/http: invalid header field value for "
                    + quote(name_bytes.decode("latin-1")))
    return fields


def from_raw(pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Fields read off the wire (an upstream response head, trailers) as ``Headers``."""
    return Headers.from_raw(pairs)


# -- the upstream response -------------------------------------------------------------------


def announced_trailers(headers: Headers) -> list[str]:
    """The trailer names an upstream response announces, as Go's client reads them.

    Only a chunked response announces anything (otherwise ``Trailer`` is just a hop-by-hop
    field that ``clean_response_headers`` removes). Call before cleaning. Names are
    canonical, each once, in order. Raises ``BadTrailerKey`` (a 502, as Go refuses the
    response) for Transfer-Encoding, Trailer or Content-Length.
    """
    values = headers.values_of("Trailer")
    if not values or headers.values_of("Transfer-Encoding") is None:
        return []
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip(" \t")
            if not name:
                continue
            name = canonical_key(name)
            if name in ("Transfer-Encoding", "Trailer", "Content-Length"):
                raise BadTrailerKey(f"bad trailer key {quote(name)}")
            if name not in names:
                names.append(name)
    return names


def clean_response_headers(headers: Headers) -> None:
    """Remove what must not reach the client from an upstream response's fields.

    The fields named in ``Connection`` and the hop-by-hop list (so an upstream's Alt-Svc,
    Keep-Alive, Transfer-Encoding, Trailer ... never reach the client); with a
    Transfer-Encoding, Content-Length goes too (the length was not the framing, as Go's
    client decides). Not for a 101 answer: the upgrade path copies its fields as they are.
    """
    if headers.values_of("Transfer-Encoding") is not None:
        headers.delete("Content-Length")
    connection = "\n".join(headers.values_of("Connection") or ())
    if connection:
        headers.delete_canonical(_connection_rule(connection)[1])
    else:
        headers.delete_canonical(HOP_BY_HOP)


def relay_trailers(trailers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The trailer fields the client gets for the upstream's ``trailers``.

    Caddy relays every trailer it receives, announced or not: names canonical, repeated
    names merged, sorted by name as Go writes them.
    """
    merged = from_raw(trailers)
    return [(name, value) for name in sorted(merged.names()) for value in merged.get_all(name)]


def gunzip_response_headers(headers: Headers, status: int) -> bool:
    """For a response to a request we added ``Accept-Encoding: gzip`` to: decode it?

    Go's transport decodes when the first Content-Encoding is ``gzip`` (any case) and the
    response has a body (not 1xx/204/304, not ``Content-Length: 0``); it then removes
    Content-Encoding and Content-Length, so the client gets the plain body with no length.
    Returns True after that fix-up: wrap the body consumer in ``GunzipBody``.
    """
    if status < 200 or status in (204, 304):
        return False
    encoding = headers.first("Content-Encoding")
    if encoding is None or not encoding.isascii() or encoding.lower() != "gzip":
        return False
    if headers.values_of("Transfer-Encoding") is None:
        length = (headers.first("Content-Length") or "").strip(" \t")
        if length.isdigit() and int(length) == 0:
            return False
    headers.delete("Content-Encoding")
    headers.delete("Content-Length")
    return True


def upgrade_accepted(requested: str, response_headers: Headers) -> bool:
    """Whether a 101 answer switches to the protocol the upstream request asked for.

    ``requested`` is ``upgrade_type`` of the headers as sent upstream. The answer's token must
    be printable ASCII and equal ignoring case; otherwise Caddy gives up on the upgrade
    without writing anything.
    """
    answered = upgrade_type(response_headers)
    if not all(" " <= ch <= "~" for ch in answered):
        return False
    return requested.isascii() and requested.lower() == answered.lower()
