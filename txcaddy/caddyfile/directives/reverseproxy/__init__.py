"""Caddyfile syntax of the ``reverse_proxy`` family.

Covers ``reverse_proxy`` (with ``transport http``/``transport fastcgi``,
dynamic upstream sources, selection policies, health checks, response
matchers and ``handle_response``), ``copy_response``,
``copy_response_headers``, and the two shortcuts built on top of it,
``php_fastcgi`` and ``forward_auth``.

The output must be what ``caddy adapt`` (2.6.2) prints. Caddy encodes every
handler through ``caddyconfig.JSONModuleObject``, which decodes the handler
into a generic map and encodes it again: every object inside a handler ends
up with sorted keys and every number goes through a float64. That is what
``jsonenc.module_object`` reproduces, so the struct-like dicts built here
only need the right keys and Go's ``omitempty`` rules.

One concern per module, as Caddy's caddyfile.go parses each piece:
``_handler`` (the handler, its own options, ``handle_response``),
``_upstreams`` (addresses, ``to``, ``dynamic``), ``_transport``,
``_policies`` (``lb_*``), ``_health``, ``_headers`` (``header_up``/``header_down``
on top of ``headers.apply_header_op``), ``_copy_response`` and
``_shortcuts`` (``php_fastcgi``, ``forward_auth``); ``_common`` holds what
they share.

txcaddy-specific extensions (``DESIGN.md`` §1): ``transport http`` accepts
``read_buffer_size``, ``write_buffer_size``, ``max_idle_conns`` and
``idle_conn_timeout``, each announced with a warning naming Caddy's
spelling, and ``keepalive_surplus_linger``; a static upstream written as
``_service._proto.name`` becomes a ``dynamic srv`` source, with a warning.
Newer Caddy options are accepted too: ``health_passes``, ``health_fails``
(Caddy 2.8), ``stream_timeout``, ``stream_close_delay`` and the
``client_ip_hash``, ``query`` and ``weighted_round_robin`` policies and the
``fallback`` block of ``header``, ``cookie`` and ``query`` (Caddy 2.7;
weights of 0 from 2.9).
"""

from __future__ import annotations

from txcaddy.caddyfile.directives.reverseproxy import (  # noqa: F401  (imported to register)
    _copy_response,
    _shortcuts,
)
from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig
from txcaddy.caddyfile.directives.reverseproxy._upstreams import parse_upstream_dial_address
from txcaddy.caddyfile.helper import Helper, JSONObject
from txcaddy.caddyfile.registry import handler_directive

__all__ = [
    "parse_upstream_dial_address",
    "ReverseProxyConfig",
]


@handler_directive("reverse_proxy")
def parse_reverse_proxy(h: Helper) -> JSONObject:
    """``reverse_proxy [<matcher>] [<upstreams...>] { ... }``."""
    config = ReverseProxyConfig(h)
    config.parse(h.dispenser)
    config.finalize()
    return config.to_json()
