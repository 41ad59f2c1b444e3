"""The ``reverse_proxy`` handler while its Caddyfile tokens are read.

:class:`ReverseProxyConfig` is Caddy's ``reverseproxy.Handler`` with its
``UnmarshalCaddyfile`` (``parse``) and ``FinalizeUnmarshalCaddyfile``
(``finalize``). Each concern parses its own subdirectives in its own module
(upstreams, transport, load balancing, health checks, header operations),
as Caddy's caddyfile.go does piece by piece; this module dispatches to them
and keeps what belongs to the handler itself: buffering and streaming
options, ``trusted_proxies``, ``method``/``rewrite``, response matchers,
``handle_response`` and ``replace_status``.
"""

from __future__ import annotations

from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile._routes import parse_segment_as_subroute
from txcaddy.caddyfile.directives.matchers import PRIVATE_RANGES, parse_named_response_matcher
from txcaddy.caddyfile.directives.reverseproxy import (
    _headers,
    _health,
    _policies,
    _transport,
    _upstreams,
)
from txcaddy.caddyfile.directives.reverseproxy._common import (
    Context,
    SubdirectiveParser,
    duration_arg,
    one_arg,
    put,
    struct,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import MATCHER_PREFIX, Helper, JSONObject, Subroute
from txcaddy.caddyfile.jsonenc import GoMap, module_object, weak_string
from txcaddy.caddyfile.lexer import Token

__all__ = ["ReverseProxyConfig"]


class ReverseProxyConfig:
    """reverseproxy.Handler while its Caddyfile tokens are read.

    ``parse`` is Caddy's UnmarshalCaddyfile, ``finalize`` its
    FinalizeUnmarshalCaddyfile (``handle_response`` routes need the
    helper), ``to_json`` the handler's JSON module object.
    """

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.ctx = Context(helper)
        self.transport_raw: JSONObject | None = None
        self.load_balancing: JSONObject | None = None
        self.health_checks: JSONObject | None = None
        self.upstreams: list[JSONObject] = []
        self.dynamic_upstreams: JSONObject | None = None
        self.flush_interval = 0
        self.trusted_proxies: list[str] = []
        self.headers: JSONObject | None = None
        self.buffer_requests = False
        self.buffer_responses = False
        self.max_buffer_size = 0
        self.stream_timeout = 0
        self.stream_close_delay = 0
        self.rewrite: JSONObject | None = None
        self.handle_response: list[JSONObject] = []
        # What one ``parse`` carries from subdirective to subdirective:
        #: the scheme every upstream must share (``""``: plain HTTP or not yet known)
        self.common_scheme = ""
        #: the ``transport`` block as parsed, and its module name
        self.transport: _transport.Transport | None = None
        self.transport_name = ""
        #: txcaddy's SRV-form upstreams and where each was written
        self.srv_upstreams: list[tuple[str, Token]] = []
        self._response_matchers: dict[str, JSONObject] = {}
        self._handle_response_segments: list[Dispenser] = []

    # -- UnmarshalCaddyfile

    def parse(self, d: Dispenser) -> None:
        """Read the directive's tokens: upstreams on its line, then each subdirective of its block.

        Afterwards SRV-form upstreams become their dynamic source and the
        transport is fitted to the upstreams' common scheme.
        """
        self.common_scheme = ""
        self.transport = None
        self.transport_name = ""
        while d.next():
            for upstream in d.remaining_args():
                _upstreams.append_upstream(self, d, upstream)

            while d.next_block(0):
                name = d.val()
                if name.startswith(MATCHER_PREFIX):
                    parse_named_response_matcher(d.new_from_next_segment(), self._response_matchers)
                    continue
                parser = _SUBDIRECTIVES.get(name)
                if parser is None:
                    raise d.err(f"unrecognized subdirective {d.val()}")
                parser(self, d)

        _upstreams.finish_srv_upstreams(self)
        _transport.finish_transport(self, d)

    def find_response_matcher(self, d: Dispenser, name: str) -> JSONObject:
        """The named response matcher ``name`` (``@…``) defined in this block."""
        if not name.startswith(MATCHER_PREFIX):
            raise d.err("must use a named response matcher, starting with '@'")
        if name not in self._response_matchers:
            raise d.err(f"no named response matcher defined with name '{name[1:]}'")
        return self._response_matchers[name]

    def add_handle_response_segment(self, d: Dispenser) -> None:
        """Keep a ``handle_response`` block until ``finalize`` (its routes need the helper)."""
        self._handle_response_segments.append(d)

    # -- FinalizeUnmarshalCaddyfile

    def finalize(self) -> None:
        for d in self._handle_response_segments:
            d.next()
            args = d.remaining_args()
            if len(args) == 2:
                raise d.err(
                    "configuring 'handle_response' for status code replacement is no longer "
                    "supported. Use 'replace_status' instead."
                )
            if len(args) > 1:
                raise d.err(f"too many arguments for 'handle_response': [{' '.join(args)}]")
            matcher = self.find_response_matcher(d, args[0]) if args else None
            subroute = parse_segment_as_subroute(
                self.helper.with_dispenser(d.new_from_next_segment())
            )
            if not isinstance(subroute, Subroute):
                raise self.helper.err("segment was not parsed as a subroute")
            handler: JSONObject = {}
            if matcher is not None:
                handler["match"] = matcher
            handler["routes"] = list(subroute.routes)
            self.handle_response.append(handler)
        with_matchers = [h for h in self.handle_response if "match" in h]
        without = [h for h in self.handle_response if "match" not in h]
        self.handle_response = with_matchers + without
        self._handle_response_segments = []
        self._response_matchers = {}

    # -- JSON

    def to_json(self) -> GoMap:
        """The handler as Caddy encodes it (zero fields omitted, keys sorted)."""
        load_balancing = None
        if self.load_balancing is not None:
            load_balancing = _policies.load_balancing_json(self.load_balancing)
        health_checks = None
        if self.health_checks is not None:
            health_checks = _health.health_checks_json(self.health_checks)
        rewrite = None
        if self.rewrite is not None:
            rewrite = struct(
                ("method", self.rewrite.get("method")), ("uri", self.rewrite.get("uri"))
            )
        handle_response = []
        for entry in self.handle_response:
            response_handler: JSONObject = {}
            if entry.get("match") is not None:
                response_handler["match"] = entry["match"]
            if entry.get("status_code"):
                response_handler["status_code"] = weak_string(entry["status_code"])
            put(response_handler, "routes", entry.get("routes"))
            handle_response.append(response_handler)
        handler = struct(
            ("transport", self.transport_raw),
            ("load_balancing", load_balancing),
            ("health_checks", health_checks),
            ("upstreams", [struct(*upstream.items()) for upstream in self.upstreams]),
            ("dynamic_upstreams", self.dynamic_upstreams),
            ("flush_interval", self.flush_interval),
            ("trusted_proxies", self.trusted_proxies),
            ("headers", self.headers),
            ("buffer_requests", self.buffer_requests),
            ("buffer_responses", self.buffer_responses),
            ("max_buffer_size", self.max_buffer_size),
            ("stream_timeout", self.stream_timeout),
            ("stream_close_delay", self.stream_close_delay),
            ("rewrite", rewrite),
            ("handle_response", handle_response),
        )
        return module_object(handler, "handler", "reverse_proxy")


# ---------------------------------------------------------------------------
# The handler's own subdirectives


def _flush_interval(config: ReverseProxyConfig, d: Dispenser) -> None:
    config.flush_interval = duration_arg(d, "bad duration value '{value}': {err}", plain_int=True)


def _stream_timeout(config: ReverseProxyConfig, d: Dispenser) -> None:  # Caddy 2.7
    config.stream_timeout = duration_arg(d, "bad duration value '{value}': {err}", plain_int=True)


def _stream_close_delay(config: ReverseProxyConfig, d: Dispenser) -> None:  # Caddy 2.7
    config.stream_close_delay = duration_arg(
        d, "bad duration value '{value}': {err}", plain_int=True
    )


def _buffer_requests(config: ReverseProxyConfig, d: Dispenser) -> None:
    if d.next_arg():
        raise d.arg_err()
    config.buffer_requests = True


def _buffer_responses(config: ReverseProxyConfig, d: Dispenser) -> None:
    if d.next_arg():
        raise d.arg_err()
    config.buffer_responses = True


def _max_buffer_size(config: ReverseProxyConfig, d: Dispenser) -> None:
    value = one_arg(d)
    try:
        size = parse_bytes(value)
    except ValueError as e:
        raise d.err(f"invalid byte size '{value}': {e}")
    if d.next_arg():
        raise d.arg_err()
    config.max_buffer_size = size if size < 2**63 else size - 2**64


def _trusted_proxies(config: ReverseProxyConfig, d: Dispenser) -> None:
    while d.next_arg():
        if d.val() == "private_ranges":
            config.trusted_proxies.extend(PRIVATE_RANGES)
            continue
        config.trusted_proxies.append(d.val())


def _request_rewrite(config: ReverseProxyConfig) -> JSONObject:
    if config.rewrite is None:
        config.rewrite = {}
    return config.rewrite


def _method(config: ReverseProxyConfig, d: Dispenser) -> None:
    value = one_arg(d)
    _request_rewrite(config)["method"] = value
    if d.next_arg():
        raise d.arg_err()


def _rewrite(config: ReverseProxyConfig, d: Dispenser) -> None:
    value = one_arg(d)
    _request_rewrite(config)["uri"] = value
    if d.next_arg():
        raise d.arg_err()


def _handle_response(config: ReverseProxyConfig, d: Dispenser) -> None:
    config.add_handle_response_segment(d.new_from_next_segment())


def _replace_status(config: ReverseProxyConfig, d: Dispenser) -> None:
    args = d.remaining_args()
    if len(args) not in (1, 2):
        raise d.err(
            "must have one or two arguments: an optional response matcher, and a status code"
        )
    handler: JSONObject = {}
    if len(args) == 2:
        handler["match"] = config.find_response_matcher(d, args[0])
    handler["status_code"] = args[-1]
    if d.next_block(1):
        raise d.err("cannot define routes for 'replace_status', use 'handle_response' instead.")
    config.handle_response.append(handler)


_HANDLER_SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "flush_interval": _flush_interval,
    "stream_timeout": _stream_timeout,
    "stream_close_delay": _stream_close_delay,
    "buffer_requests": _buffer_requests,
    "buffer_responses": _buffer_responses,
    "max_buffer_size": _max_buffer_size,
    "trusted_proxies": _trusted_proxies,
    "method": _method,
    "rewrite": _rewrite,
    "handle_response": _handle_response,
    "replace_status": _replace_status,
}

#: Every subdirective of ``reverse_proxy`` → its parser (named response matchers aside).
_SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    **_upstreams.SUBDIRECTIVES,
    **_policies.SUBDIRECTIVES,
    **_health.SUBDIRECTIVES,
    **_headers.SUBDIRECTIVES,
    **_transport.SUBDIRECTIVES,
    **_HANDLER_SUBDIRECTIVES,
}

