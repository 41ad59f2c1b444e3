"""``header_up`` and ``header_down`` of ``reverse_proxy``.

The operations are the ``header`` directive's (``headers.apply_header_op``,
Caddy's ``headers.CaddyfileHeaderOp``); what is proxy-specific is the
warning for a ``header_up`` that only repeats what the proxy sends anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from txcaddy.caddyfile.directives.headers import apply_header_op
from txcaddy.caddyfile.directives.reverseproxy._common import SubdirectiveParser
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import JSONObject

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig

_UNNECESSARY_HEADER_UP = (
    ("host", ("{hostport}", "{http.request.hostport}"), "Host"),
    (
        "x-forwarded-for",
        ("{remote}", "{http.request.remote}", "{remote_host}", "{http.request.remote.host}"),
        "X-Forwarded-For",
    ),
    ("x-forwarded-proto", ("{scheme}", "{http.request.scheme}"), "X-Forwarded-Proto"),
    (
        "x-forwarded-host",
        ("{host}", "{http.request.host}", "{hostport}", "{http.request.hostport}"),
        "X-Forwarded-Host",
    ),
)


def _header_ops(config: ReverseProxyConfig, which: str) -> JSONObject:
    """The handler's ``headers.request`` or ``headers.response``, created on first use."""
    if config.headers is None:
        config.headers = {}
    return config.headers.setdefault(which, {})


def _header_op(d: Dispenser, ops: JSONObject, args: list[str]) -> None:
    value = args[1] if len(args) > 1 else ""
    replacement = args[2] if len(args) > 2 else ""
    try:
        apply_header_op(ops, args[0], value, replacement)
    except ValueError as e:
        raise d.err(str(e))


def _header_up(config: ReverseProxyConfig, d: Dispenser) -> None:
    ops = _header_ops(config, "request")
    args = d.remaining_args()
    if len(args) not in (1, 2, 3):
        raise d.arg_err()
    if len(args) == 2:
        for lower_field, values, shown in _UNNECESSARY_HEADER_UP:
            if args[0].lower() == lower_field and args[1] in values:
                config.ctx.warn(
                    d,
                    f"Unnecessary header_up {shown}: the reverse proxy's default "
                    "behavior is to pass headers to the upstream",
                )
    _header_op(d, ops, args)


def _header_down(config: ReverseProxyConfig, d: Dispenser) -> None:
    ops = _header_ops(config, "response")
    args = d.remaining_args()
    if len(args) not in (1, 2, 3):
        raise d.arg_err()
    _header_op(d, ops, args)


SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "header_up": _header_up,
    "header_down": _header_down,
}
