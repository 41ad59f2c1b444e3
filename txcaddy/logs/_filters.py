"""The ``filter`` encoder's field filters (``caddy.logging.encoders.filter.*``).

Each has ``filter(key, value) -> (key, value) | None`` (None deletes the field). Like
Caddy's, they change strings and header value arrays and leave other values alone.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from txcaddy._go.http import (
    escaped_path,
    request_cookies,
    sanitize_cookie_name,
    sanitize_cookie_value,
)
from txcaddy._go.net import AddrError, join_host_port, parse_ip, split_host_port
from txcaddy._go.regexp import RegexpError, compile_regexp, expander, replace_all
from txcaddy._go.url import BAD_ESCAPE, parse_query, query_escape
from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRING, ListOf, Obj, Spec
from txcaddy.errors import ConfigError
from txcaddy.http.headers import Headers
from txcaddy.logs._values import StringArray


def _short_hash(text: str) -> str:
    """Caddy's hash: the first 4 bytes of SHA-256, in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if value.__class__ is StringArray:
        return StringArray(change(v) for v in value)
    if value.__class__ is str:
        return change(value)
    return value


class DeleteFilter:
    def filter(self, key: str, value: Any) -> None:
        return None


class ReplaceFilter:
    def __init__(self, value: str) -> None:
        self.replacement = value

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, self.replacement


class RenameFilter:
    def __init__(self, name: str) -> None:
        self.name = name

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return self.name, value


class HashFilter:
    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, _short_hash)


class RegexpFilter:
    def __init__(self, pattern: str, value: str) -> None:
        try:
            self.regexp = compile_regexp(pattern)
        except RegexpError as e:
            raise ConfigError(f"error parsing regexp: {e}") from None
        self.expand = expander(self.regexp, value)

    def _replace(self, text: str) -> str:
        return replace_all(self.regexp, text, self.expand)

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, self._replace)


class IPMaskFilter:
    """Masks IP addresses (``ip`` or ``ip:port``, comma-separated lists too)."""

    def __init__(self, ipv4_cidr: int, ipv6_cidr: int) -> None:
        # Go's IP.Mask with no mask for the family gives a nil IP, printed "<nil>".
        self.v4 = ((1 << 32) - (1 << (32 - ipv4_cidr))) if 0 < ipv4_cidr <= 32 else None
        self.v6 = ((1 << 128) - (1 << (128 - ipv6_cidr))) if 0 < ipv6_cidr <= 128 else None

    def mask(self, text: str) -> str:
        out = []
        for value in text.split(","):
            value = value.strip(" \t\n\r\v\f")
            try:
                host, port = split_host_port(value)
            except AddrError:
                host, port = value, ""
            address = parse_ip(host)
            if address is None:
                out.append(value)
                continue
            masked: str
            if address.version == 4:
                masked = "<nil>" if self.v4 is None else str(ipaddress.IPv4Address(int(address) & self.v4))
            else:
                masked = "<nil>" if self.v6 is None else str(ipaddress.IPv6Address(int(address) & self.v6))
            out.append(join_host_port(masked, port) if port else masked)
        return ", ".join(out)

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, self.mask)


_FILTER_ACTIONS = ("replace", "hash", "delete")


def _actions(config: dict[str, Any], name_key: str) -> list[tuple[str, str, str]]:
    actions = []
    for action in config.get("actions") or ():
        kind = action.get("type")
        if kind not in _FILTER_ACTIONS:
            raise ConfigError("invalid action type")
        actions.append((kind, str(action.get(name_key) or ""), str(action.get("value") or "")))
    return actions


class QueryFilter:
    """Replaces, hashes or deletes query parameters of a URI; the query is re-encoded sorted, as Go's ``Values.Encode``.

    ``hash`` hashes each value of the parameter (Caddy 2.6.2 hashes the
    action's empty ``value`` instead, a bug fixed later; see docs/logging.md).
    """

    def __init__(self, actions: list[tuple[str, str, str]]) -> None:
        self.actions = actions

    def rewrite(self, uri: str) -> str:
        rest, hash_mark, fragment = uri.partition("#")
        path, question, query = rest.partition("?")
        if BAD_ESCAPE.search(path) is not None:
            return uri  # Go's url.Parse fails; Caddy leaves the field as it is
        values = {k: list(v) for k, v in parse_query(query)[0].items()}
        for kind, name, replacement in self.actions:
            if kind == "delete":
                values.pop(name, None)
            elif name in values:
                if kind == "replace":
                    values[name] = [replacement for _ in values[name]]
                else:
                    values[name] = [_short_hash(v) for v in values[name]]
        encoded = "&".join(
            f"{query_escape(k)}={query_escape(v)}" for k in sorted(values) for v in values[k]
        )
        decoded = unquote(path, errors="surrogateescape") if "%" in path else path
        out = escaped_path(_PathView(path, decoded)) if path else ""
        if encoded or (question and not query):
            out += "?" + encoded
        if hash_mark:
            out += "#" + fragment
        return out

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        if value.__class__ is str:
            return key, self.rewrite(value)
        return key, value


class _PathView:
    __slots__ = ("raw_path", "path")

    def __init__(self, raw_path: str, path: str) -> None:
        self.raw_path = raw_path
        self.path = path


class CookieFilter:
    """Replaces, hashes or deletes cookies in a ``Cookie`` header's values."""

    def __init__(self, actions: list[tuple[str, str, str]]) -> None:
        self.actions = actions

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        if value.__class__ is not StringArray:
            return key, value
        cookies = []
        for name, cookie_value in request_cookies(Headers(("Cookie", v) for v in value)):
            for kind, action_name, replacement in self.actions:
                if name != action_name:
                    continue
                if kind == "delete":
                    break
                cookie_value = replacement if kind == "replace" else _short_hash(cookie_value)
                cookies.append(f"{sanitize_cookie_name(name)}={sanitize_cookie_value(cookie_value)}")
                break
            else:
                cookies.append(f"{sanitize_cookie_name(name)}={sanitize_cookie_value(cookie_value)}")
        return key, StringArray(["; ".join(cookies)] if cookies else [])


_ACTIONS: Spec = Obj(
    {"actions": ListOf(Obj({"type": STRING, "parameter": STRING, "name": STRING, "value": STRING}, strict=True))},
    strict=True,
)


@module("caddy.logging.encoders.filter.delete")
def _delete_filter(config: dict[str, Any], context: Any) -> DeleteFilter:
    return DeleteFilter()


@module("caddy.logging.encoders.filter.replace", schema=Obj({"value": STRING}, strict=True))
def _replace_filter(config: dict[str, Any], context: Any) -> ReplaceFilter:
    return ReplaceFilter(str(config.get("value") or ""))


@module("caddy.logging.encoders.filter.rename", schema=Obj({"name": STRING}, strict=True))
def _rename_filter(config: dict[str, Any], context: Any) -> RenameFilter:
    return RenameFilter(str(config.get("name") or ""))


@module("caddy.logging.encoders.filter.hash")
def _hash_filter(config: dict[str, Any], context: Any) -> HashFilter:
    return HashFilter()


@module("caddy.logging.encoders.filter.regexp", schema=Obj({"regexp": STRING, "value": STRING}, strict=True))
def _regexp_filter(config: dict[str, Any], context: Any) -> RegexpFilter:
    return RegexpFilter(str(config.get("regexp") or ""), str(config.get("value") or ""))


@module("caddy.logging.encoders.filter.ip_mask", schema=Obj({"ipv4_cidr": INT, "ipv6_cidr": INT}, strict=True))
def _ip_mask_filter(config: dict[str, Any], context: Any) -> IPMaskFilter:
    return IPMaskFilter(int(config.get("ipv4_cidr") or 0), int(config.get("ipv6_cidr") or 0))


@module("caddy.logging.encoders.filter.query", schema=_ACTIONS)
def _query_filter(config: dict[str, Any], context: Any) -> QueryFilter:
    return QueryFilter(_actions(config, "parameter"))


@module("caddy.logging.encoders.filter.cookie", schema=_ACTIONS)
def _cookie_filter(config: dict[str, Any], context: Any) -> CookieFilter:
    return CookieFilter(_actions(config, "name"))
