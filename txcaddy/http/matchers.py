"""Caddy 2.6.2's request matchers (``http.matchers.*``) except ``file``.

Each matcher is built once from its JSON and answers ``match(request)`` by
walking prepared data. Their semantics, including the odd corners people rely
on or attack, follow Caddy's ``matchers.go`` and ``vars.go``:

* ``path`` lower-cases the decoded path, trims trailing dots and spaces,
  cleans it like Go's ``path.Clean`` (keeping a trailing slash, merging ``//``
  unless the pattern has ``//``), and matches ``*`` prefix/suffix/substring
  patterns or Go ``path.Match`` globs; a pattern with ``%`` is matched against
  the escaped path instead;
* ``host`` ignores the port and case, ``*`` stands for one label;
* ``header`` values are case-sensitive with ``*`` wildcards at the ends; a
  ``null`` value means "absent"; the ``Host`` field is the request's host;
* ``query`` is an OR over all pairs and looks at each key's first value;
* regexp matchers use Go's RE2 syntax and publish their captures as
  ``{http.regexp.[name.]N}`` / ``{http.regexp.[name.]group}``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from zope.interface import implementer

from txcaddy._go.fmt import sprint
from txcaddy._go.http import escaped_path, remote_addr
from txcaddy._go.net import AddrError, split_host_port
from txcaddy._go.netip import Address, ParseAddrError, parse_addr, parse_prefix
from txcaddy._go.path import clean, compile_pattern
from txcaddy._go.path import match as path_match
from txcaddy._go.regexp import RegexpError, compile_regexp
from txcaddy._go.strings import to_lower
from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy._go.url import parse_query, path_unescape
from txcaddy.config.placeholders import Template, lookup
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, MATCHER_SET, STRING, STRINGS, ListOf, MapOf, Nullable, Obj
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IRequestMatcher

# -- Caddy's path cleaning -----------------------------------------------------------------


def clean_path(path: str) -> str:
    """Caddy's ``cleanPath``: ``path.Clean`` keeping a trailing slash."""
    if path[:1] == "/" and "//" not in path and "/." not in path:
        return path  # nothing to clean (the common case)
    cleaned = clean(path)
    if cleaned != "/" and path.endswith("/"):
        cleaned += "/"
    return cleaned


_SLASH_MARK = "\udcff"  # what Go's 0xff marker byte is in a surrogate-escaped str
_INVALID_BYTES = re.compile("[\udc80-\udcff]")


def clean_path_keep_slashes(path: str, merge_slashes: bool) -> str:
    """Caddy's ``CleanPath``: with ``merge_slashes`` False, ``//`` survives cleaning."""
    if merge_slashes:
        return clean_path(path)
    if "//" not in path:
        return clean_path(path)
    if _INVALID_BYTES.search(path):
        path = _INVALID_BYTES.sub("\ufffd", path)  # Go's rune loop turns invalid bytes into U+FFFD
    marked = path.replace("//", "/" + _SLASH_MARK + "/")
    while "//" in marked:  # three or more slashes in a row
        marked = marked.replace("//", "/" + _SLASH_MARK + "/")
    return clean_path(marked).replace(_SLASH_MARK, "")


def _match_escaped(escaped: str, pattern: str) -> bool:
    """Caddy's ``matchPatternWithEscapeSequence``: a ``%`` pattern against the escaped path.

    ``%xx`` in the pattern must appear escaped in the path; ``%*`` matches a
    run of the path as escaped; ``*`` a run as decoded; other characters are
    compared with the decoded path.
    """
    built: list[str] = []
    i_pattern = i_path = 0
    pattern_length, path_length = len(pattern), len(escaped)
    while i_pattern < pattern_length and i_path < path_length:
        path_ch = escaped[i_path]
        escaped_ch = ""
        if path_ch == "%" and path_length >= i_path + 3:
            escaped_ch = escaped[i_path : i_path + 3].lower()
            decoded = path_unescape(escaped_ch)
            if decoded is None:
                return False
            path_ch = decoded
            i_path += 2
        c = pattern[i_pattern]
        if c == "%" and pattern_length >= i_pattern + 3 and pattern[i_pattern + 1] != "*":
            built.append(escaped_ch)
            i_path += 1
            i_pattern += 2
        elif c == "%" or c == "*":
            normalize = True
            if c == "%":
                i_pattern += 1
                normalize = False
            remaining = escaped[i_path:]
            until = len(remaining)
            if i_pattern < pattern_length - 1:
                until = remaining.find(pattern[i_pattern + 1])
                if until == -1:
                    return False
            if until:
                piece = remaining[:until]
                if normalize:
                    unescaped = path_unescape(piece)
                    if unescaped is None:
                        return False
                    piece = unescaped
                built.append(piece)
                i_path += until
        else:
            built.append(path_ch)
            i_path += 1
        i_pattern += 1
    return path_match(pattern.replace("%*", "*"), "".join(built))


# -- regexp matching shared by path_regexp, header_regexp, vars_regexp ------------------

_WORD = re.compile(r"[0-9A-Za-z_]")


class MatchRegexp:
    """Caddy's ``MatchRegexp``: a Go regexp whose captures become placeholders."""

    __slots__ = ("name", "pattern", "compiled", "_index_keys", "_name_keys")

    def __init__(self, config: Any) -> None:
        if not isinstance(config, dict):
            raise ConfigError(f"a regexp matcher must be a JSON object with 'pattern', got {config!r}")
        self.name = config.get("name") or ""
        self.pattern = config.get("pattern") or ""
        if not isinstance(self.name, str) or not isinstance(self.pattern, str):
            raise ConfigError("regexp matcher: 'name' and 'pattern' must be strings")
        try:
            self.compiled = compile_regexp(self.pattern)
        except RegexpError as e:
            raise ConfigError(f"compiling matcher regexp {self.pattern}: {e}") from None
        if self.name and not _WORD.search(self.name):
            raise ConfigError(f"invalid regexp name (must contain only word characters): {self.name}")
        prefix = "http.regexp" + ("." + self.name if self.name else "")
        self._index_keys = tuple(f"{prefix}.{i}" for i in range(self.compiled.groups + 1))
        self._name_keys = tuple((f"{prefix}.{group}", index) for group, index in sorted(self.compiled.groupindex.items(), key=lambda kv: kv[1]))

    def match(self, text: str, request: Any) -> bool:
        found = self.compiled.search(text)
        if found is None:
            return False
        values = (found.group(0),) + found.groups("")
        placeholders = request.placeholders
        placeholders.update(zip(self._index_keys, values, strict=True))
        for key, index in self._name_keys:
            placeholders[key] = values[index]
        return True


# -- matchers --------------------------------------------------------------------------------


def _strings(config: Any, what: str) -> list[str]:
    if not isinstance(config, list) or not all(isinstance(v, str) for v in config):
        raise ConfigError(f"{what} matcher: expected a JSON array of strings, got {config!r}")
    return config


def _request_hostname(request: Any) -> str:
    """The host Caddy's matchers compare: port removed, or brackets trimmed."""
    host = request.host
    if ":" in host:
        try:
            return split_host_port(host)[0]
        except AddrError:
            pass
    if host.startswith("["):
        host = host[1:]
    if host.endswith("]"):
        host = host[:-1]
    return host


def _labels_match(pattern: str, host: str) -> bool:
    pattern_labels = pattern.split(".")
    host_labels = host.split(".")
    if len(pattern_labels) != len(host_labels):
        return False
    for wanted, actual in zip(pattern_labels, host_labels, strict=True):
        if wanted != "*" and wanted.lower() != actual.lower():
            return False
    return True


@implementer(IRequestMatcher)
class MatchHost:
    """``host``: exact names in a set, wildcards and placeholders checked one by one."""

    def __init__(self, hosts: Sequence[str]) -> None:
        seen: dict[str, int] = {}
        for i, host in enumerate(hosts):
            lowered = host.lower()
            if lowered in seen:
                raise ConfigError(f"host at index {seen[lowered]} is repeated at index {i}: {lowered}")
            seen[lowered] = i
        self.hosts = tuple(hosts)
        self._exact = frozenset(h.lower() for h in hosts if "{" not in h and "*" not in h)
        self._wild = tuple(h for h in hosts if "{" not in h and "*" in h)
        self._dynamic = tuple(Template(h) for h in hosts if "{" in h)

    def match(self, request: Any) -> bool:
        host = _request_hostname(request)
        if host.lower() in self._exact:
            return True
        for pattern in self._wild:
            if _labels_match(pattern, host):
                return True
        for template in self._dynamic:
            pattern = template.render(request, empty_unknown=True)
            if "*" in pattern:
                if _labels_match(pattern, host):
                    return True
            elif pattern.lower() == host.lower():
                return True
        return False


_ALL, _ESCAPED, _CONTAINS, _SUFFIX, _PREFIX, _GLOB, _EXACT = range(7)


class _PathPattern:
    __slots__ = ("text", "kind", "arg", "merge_slashes")

    arg: Any  # the text to compare, or the compiled glob

    def __init__(self, text: str) -> None:
        self.text = text
        self.merge_slashes = "//" not in text
        stars = text.count("*")
        if text == "*":
            self.kind, self.arg = _ALL, ""
        elif "%" in text:
            self.kind, self.arg = _ESCAPED, text
        elif stars == 2 and text.startswith("*") and text.endswith("*"):
            self.kind, self.arg = _CONTAINS, text[1:-1]
        elif stars == 1 and text.startswith("*"):
            self.kind, self.arg = _SUFFIX, text[1:]
        elif stars == 1 and text.endswith("*"):
            self.kind, self.arg = _PREFIX, text[:-1]
        elif not any(ch in text for ch in "*?[\\"):
            self.kind, self.arg = _EXACT, text
        else:
            self.kind, self.arg = _GLOB, compile_pattern(text)


@implementer(IRequestMatcher)
class MatchPath:
    """``path``: case-insensitive, cleaned path patterns (see the module docstring)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._match_all = "*" in self.patterns
        prepared: list[Any] = []
        for pattern in self.patterns:
            lowered = to_lower(pattern)  # placeholders' names too, as Caddy does
            template = Template(lowered)
            prepared.append(_PathPattern(template.render(None)) if template.is_static else template)
        self._patterns = tuple(prepared)

    def match(self, request: Any) -> bool:
        if self._match_all:
            return True
        lowered: str | None = None
        cleaned: dict[bool, str] = {}
        for prepared in self._patterns:
            pattern = prepared if prepared.__class__ is _PathPattern else _PathPattern(prepared.render(request, empty_unknown=True))
            kind = pattern.kind
            if kind == _ALL:
                return True
            if kind == _ESCAPED:
                escaped = clean_path_keep_slashes(escaped_path(request), pattern.merge_slashes)
                if _match_escaped(escaped, pattern.arg):
                    return True
                continue
            target = cleaned.get(pattern.merge_slashes)
            if target is None:
                if lowered is None:
                    lowered = to_lower(request.path).rstrip(". ")
                target = cleaned[pattern.merge_slashes] = clean_path_keep_slashes(lowered, pattern.merge_slashes)
            if kind == _EXACT:
                if target == pattern.arg:
                    return True
            elif kind == _PREFIX:
                if target.startswith(pattern.arg):
                    return True
            elif kind == _SUFFIX:
                if target.endswith(pattern.arg):
                    return True
            elif kind == _CONTAINS:
                if pattern.arg in target:
                    return True
            elif pattern.arg.match(target):
                return True
        return False


@implementer(IRequestMatcher)
class MatchPathRE:
    """``path_regexp``: a Go regexp against the cleaned, decoded, case-preserved path."""

    def __init__(self, regexp: MatchRegexp) -> None:
        self.regexp = regexp

    def match(self, request: Any) -> bool:
        return self.regexp.match(clean_path(request.path), request)


@implementer(IRequestMatcher)
class MatchMethod:
    """``method``: exact, case-sensitive."""

    def __init__(self, methods: Sequence[str]) -> None:
        self.methods = frozenset(methods)

    def match(self, request: Any) -> bool:
        return request.method in self.methods


@implementer(IRequestMatcher)
class MatchQuery:
    """``query`` (2.6.2): true when any pair matches the key's first value (``*``: present)."""

    def __init__(self, pairs: dict[str, list[str]]) -> None:
        self._pairs = tuple((Template(key), tuple(Template(v) for v in values)) for key, values in pairs.items())

    def match(self, request: Any) -> bool:
        values, failed = parse_query(request.query)
        if failed:
            return False
        for key_template, value_templates in self._pairs:
            actual = values.get(key_template.render(request, empty_unknown=True))
            if actual is None:
                continue
            first = actual[0]
            for value_template in value_templates:
                wanted = value_template.render(request, empty_unknown=True)
                if first == wanted or wanted == "*":
                    return True
        return not self._pairs and not values


def _header_values(request: Any, name: str) -> list[str] | None:
    """The values Caddy sees for a field: None when absent; ``Host`` is the request's host."""
    if name == "Host":
        return [request.host] if request.host else None
    headers = request.headers
    return headers.get_all(name) if name in headers else None


def _header_value_matches(wanted: str, actual: str) -> bool:
    if wanted == "*":
        return True
    starts, ends = wanted.startswith("*"), wanted.endswith("*")
    if starts and ends:
        return wanted[1:-1] in actual
    if starts:
        return actual.endswith(wanted[1:])
    if ends:
        return actual.startswith(wanted[:-1])
    return actual == wanted


@implementer(IRequestMatcher)
class MatchHeader:
    """``header``: every field must match; a null list means the field must be absent."""

    def __init__(self, fields: dict[str, list[str] | None]) -> None:
        self._fields = tuple(
            (canonical_key(name), None if values is None else tuple(Template(v) for v in values)) for name, values in fields.items()
        )

    def match(self, request: Any) -> bool:
        for name, allowed in self._fields:
            actual = _header_values(request, name)
            if allowed is not None and not allowed and actual is not None:
                continue
            if allowed is None and actual is None:
                continue
            matched = False
            for actual_value in actual or ():
                for template in allowed or ():
                    if _header_value_matches(template.render(request, empty_unknown=True), actual_value):
                        matched = True
                        break
                if matched:
                    break
            if not matched:
                return False
        return True


@implementer(IRequestMatcher)
class MatchHeaderRE:
    """``header_regexp``: each field's regexp must match one of its values."""

    def __init__(self, fields: dict[str, MatchRegexp]) -> None:
        self._fields = tuple((canonical_key(name), regexp) for name, regexp in fields.items())

    def match(self, request: Any) -> bool:
        for name, regexp in self._fields:
            for value in _header_values(request, name) or ():
                if regexp.match(value, request):
                    break
            else:
                return False
        return True


_PROTOCOLS = {
    "http/1.0": lambda v: v == (1, 0),
    "http/1.0+": lambda v: v >= (1, 0),
    "http/1.1": lambda v: v == (1, 1),
    "http/1.1+": lambda v: v >= (1, 1),
    "http/2": lambda v: v[0] == 2,
    "http/2+": lambda v: v >= (2, 0),
    "http/3": lambda v: v[0] == 3,
    "http/3+": lambda v: v >= (3, 0),
}


@implementer(IRequestMatcher)
class MatchProtocol:
    """``protocol``: http, https, grpc, http/1.0 … http/3, and the ``+`` forms."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._version_test = _PROTOCOLS.get(protocol)

    def match(self, request: Any) -> bool:
        protocol = self.protocol
        if protocol == "https":
            return request.tls is not None
        if protocol == "http":
            return request.tls is None
        if protocol == "grpc":
            return (request.headers.get("Content-Type") or "").startswith("application/grpc")
        test = self._version_test
        return test is not None and test(request.version)


@lru_cache(maxsize=1024)
def _client_address(text: str) -> Address | None:
    """The client's address (no zone) as Go's ``netip.ParseAddr`` reads it; None if it is none."""
    try:
        return parse_addr(text)[0]
    except ParseAddrError:
        return None


@implementer(IRequestMatcher)
class MatchRemoteIP:
    """``remote_ip``: the peer (or with ``forwarded`` the first X-Forwarded-For entry) in a range."""

    def __init__(self, ranges: Sequence[str], forwarded: bool = False) -> None:
        self.forwarded = forwarded
        networks = []
        for text in ranges:
            zone = ""
            if "%" in text:
                parts = text.split("%")
                text, zone = parts[0], parts[1]
            try:
                if "/" in text:
                    network = parse_prefix(text)
                else:
                    network = ipaddress.ip_network(parse_addr(text)[0])
            except ParseAddrError as e:
                kind = "parsing CIDR expression" if "/" in text else "invalid IP address:"
                raise ConfigError(f"{kind} '{text}': {e}") from None
            networks.append((network, zone))
        self._networks = tuple(networks)

    def _client_ip(self, request: Any) -> tuple[Any, str]:
        remote = remote_addr(request)
        if self.forwarded:
            forwarded_for = request.headers.get("X-Forwarded-For")
            if forwarded_for:
                remote = forwarded_for.split(",")[0].strip()
        try:
            host = split_host_port(remote)[0]
        except AddrError:
            host = remote
        zone = ""
        if "%" in host:
            pieces = host.split("%")
            host, zone = pieces[0], pieces[1]
        return _client_address(host), zone

    def match(self, request: Any) -> bool:
        address, zone = self._client_ip(request)
        if address is None:
            return False
        for network, wanted_zone in self._networks:
            if address.version == network.version and address in network:
                if not wanted_zone or zone == wanted_zone:
                    return True
        return False


@implementer(IRequestMatcher)
class MatchNot:
    """``not``: true when none of its matcher sets matches."""

    def __init__(self, matcher_sets: Sequence[Any]) -> None:
        self.matcher_sets = tuple(matcher_sets)

    def match(self, request: Any) -> bool:
        for matcher_set in self.matcher_sets:
            if matcher_set.match(request):
                return False
        return True


def _var_key_value(key: str, request: Any) -> Any:
    if key.startswith("{") and key.endswith("}") and key.count("{") == 1:
        value, _ = lookup(key.strip("{}"), request)
        return value
    return request.vars.get(key)


@implementer(IRequestMatcher)
class MatchVars:
    """``vars``: a var (or a ``{placeholder}``) equals one of the values, compared as Go prints it."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = tuple((key, tuple(Template(v) for v in values)) for key, values in fields.items())

    def match(self, request: Any) -> bool:
        if not self._fields:
            return True
        for key, templates in self._fields:
            text = sprint(_var_key_value(key, request))
            for template in templates:
                if text == template.render(request, empty_unknown=True):
                    return True
        return False


@implementer(IRequestMatcher)
class MatchVarsRE:
    """``vars_regexp``: a regexp against a var's value (placeholders in it expanded), or the key's."""

    def __init__(self, fields: dict[str, MatchRegexp]) -> None:
        self._fields = tuple((key, Template(key), regexp) for key, regexp in fields.items())

    def match(self, request: Any) -> bool:
        for key, key_template, regexp in self._fields:
            value = sprint(request.vars.get(key))
            if "{" in value:
                value = Template(value).render(request, empty_unknown=True)
            if regexp.match(value, request):
                return True
            if regexp.match(key_template.render(request, empty_unknown=True), request):
                return True
        return False


# -- loading -----------------------------------------------------------------------------------


def _object(config: Any, what: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError(f"{what} matcher: expected a JSON object, got {config!r}")
    return config


_REGEXP = Obj({"name": STRING, "pattern": STRING}, strict=True, name="caddyhttp.MatchRegexp")


@module("http.matchers.host", schema=STRINGS)
def load_host(config: Any, context: Any) -> MatchHost:
    return MatchHost(_strings(config, "host"))


@module("http.matchers.path", schema=STRINGS)
def load_path(config: Any, context: Any) -> MatchPath:
    return MatchPath(_strings(config, "path"))


@module("http.matchers.path_regexp", schema=_REGEXP)
def load_path_regexp(config: Any, context: Any) -> MatchPathRE:
    return MatchPathRE(MatchRegexp(config))


@module("http.matchers.method", schema=STRINGS)
def load_method(config: Any, context: Any) -> MatchMethod:
    return MatchMethod(_strings(config, "method"))


@module("http.matchers.query", schema=MapOf(STRINGS))
def load_query(config: Any, context: Any) -> MatchQuery:
    pairs = _object(config, "query")
    for key, values in pairs.items():
        _strings(values, f"query ({key})")
    return MatchQuery(pairs)


@module("http.matchers.header", schema=MapOf(Nullable(STRINGS)))
def load_header(config: Any, context: Any) -> MatchHeader:
    fields = _object(config, "header")
    for name, values in fields.items():
        if values is not None:
            _strings(values, f"header ({name})")
    return MatchHeader(fields)


@module("http.matchers.header_regexp", schema=MapOf(_REGEXP))
def load_header_regexp(config: Any, context: Any) -> MatchHeaderRE:
    return MatchHeaderRE({name: MatchRegexp(value) for name, value in _object(config, "header_regexp").items()})


@module("http.matchers.protocol", schema=STRING)
def load_protocol(config: Any, context: Any) -> MatchProtocol:
    if not isinstance(config, str):
        raise ConfigError(f"protocol matcher: expected a JSON string, got {config!r}")
    return MatchProtocol(config)


@module("http.matchers.remote_ip", schema=Obj({"ranges": STRINGS, "forwarded": BOOL}, strict=True))
def load_remote_ip(config: Any, context: Any) -> MatchRemoteIP:
    config = _object(config, "remote_ip")
    return MatchRemoteIP(_strings(config.get("ranges") or [], "remote_ip ranges"), bool(config.get("forwarded")))


@module("http.matchers.not", schema=ListOf(MATCHER_SET))
def load_not(config: Any, context: Any) -> MatchNot:
    if not isinstance(config, list):
        raise ConfigError(f"not matcher: expected a JSON array of matcher sets, got {config!r}")
    return MatchNot(context.load_matcher_sets(config))


@module("http.matchers.vars", schema=MapOf(STRINGS))
def load_vars(config: Any, context: Any) -> MatchVars:
    fields = _object(config, "vars")
    for key, values in fields.items():
        _strings(values, f"vars ({key})")
    return MatchVars(fields)


@module("http.matchers.vars_regexp", schema=MapOf(_REGEXP))
def load_vars_regexp(config: Any, context: Any) -> MatchVarsRE:
    return MatchVarsRE({key: MatchRegexp(value) for key, value in _object(config, "vars_regexp").items()})


__all__ = [
    "MatchHeader",
    "MatchHeaderRE",
    "MatchHost",
    "MatchMethod",
    "MatchNot",
    "MatchPath",
    "MatchPathRE",
    "MatchProtocol",
    "MatchQuery",
    "MatchRegexp",
    "MatchRemoteIP",
    "MatchVars",
    "MatchVarsRE",
    "clean_path",
    "clean_path_keep_slashes",
]
