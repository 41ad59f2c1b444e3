"""Health checks of ``reverse_proxy``: the ``health_*`` (active) and passive options.

Newer Caddy options are accepted too: ``health_passes`` and ``health_fails``
(Caddy 2.8). ``health_path`` is Caddy's deprecated spelling of
``health_uri``, accepted with Caddy's warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from txcaddy._go.strconv import atoi as go_atoi
from txcaddy.caddyfile.directives.reverseproxy._common import (
    SubdirectiveParser,
    duration_arg,
    integer_arg,
    one_arg,
    struct,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig


def _status_code(text: str) -> int:
    """``404`` or a class like ``4xx`` (→ 4)."""
    if len(text) == 3 and text.endswith("xx"):
        text = text[:1]
    return go_atoi(text)


# -- HealthChecks.Active and .Passive, created on first use as Caddy's pointers are


def _active(config: ReverseProxyConfig) -> JSONObject:
    if config.health_checks is None:
        config.health_checks = {}
    return config.health_checks.setdefault("active", {})


def _passive(config: ReverseProxyConfig) -> JSONObject:
    if config.health_checks is None:
        config.health_checks = {}
    return config.health_checks.setdefault("passive", {})


# -- active


def _health_uri(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["uri"] = one_arg(d)


def _health_path(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["path"] = one_arg(d)
    config.ctx.warn(
        d,
        "the 'health_path' subdirective is deprecated, please use 'health_uri' instead!",
    )


def _health_port(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["port"] = integer_arg(d, "bad port number '{value}': {err}")


def _health_headers(config: ReverseProxyConfig, d: Dispenser) -> None:
    health_headers = GoMap()
    nesting = d.nesting
    while d.next_block(nesting):
        key = d.val()
        health_headers[key] = d.remaining_args() or [""]
    _active(config)["headers"] = health_headers


def _health_interval(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["interval"] = duration_arg(d, "bad interval value {value}: {err}")


def _health_timeout(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["timeout"] = duration_arg(d, "bad timeout value {value}: {err}")


def _health_status(config: ReverseProxyConfig, d: Dispenser) -> None:
    value = one_arg(d)
    try:
        _active(config)["expect_status"] = _status_code(value)
    except ValueError as e:
        raise d.err(f"bad status value '{value}': {e}")


def _health_body(config: ReverseProxyConfig, d: Dispenser) -> None:
    _active(config)["expect_body"] = one_arg(d)


def _health_passes(config: ReverseProxyConfig, d: Dispenser) -> None:  # Caddy 2.8
    _active(config)["passes"] = integer_arg(d, "invalid passes count '{value}': {err}")


def _health_fails(config: ReverseProxyConfig, d: Dispenser) -> None:  # Caddy 2.8
    _active(config)["fails"] = integer_arg(d, "invalid fails count '{value}': {err}")


# -- passive


def _max_fails(config: ReverseProxyConfig, d: Dispenser) -> None:
    _passive(config)["max_fails"] = integer_arg(d, "invalid maximum fail count '{value}': {err}")


def _fail_duration(config: ReverseProxyConfig, d: Dispenser) -> None:
    _passive(config)["fail_duration"] = duration_arg(d, "bad duration value '{value}': {err}")


def _unhealthy_request_count(config: ReverseProxyConfig, d: Dispenser) -> None:
    _passive(config)["unhealthy_request_count"] = integer_arg(
        d, "invalid maximum connection count '{value}': {err}"
    )


def _unhealthy_status(config: ReverseProxyConfig, d: Dispenser) -> None:
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    passive = _passive(config)
    for arg in args:
        try:
            code = _status_code(arg)
        except ValueError as e:
            raise d.err(f"bad status value '{d.val()}': {e}")
        passive.setdefault("unhealthy_status", []).append(code)


def _unhealthy_latency(config: ReverseProxyConfig, d: Dispenser) -> None:
    _passive(config)["unhealthy_latency"] = duration_arg(d, "bad duration value '{value}': {err}")


SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "health_uri": _health_uri,
    "health_path": _health_path,
    "health_port": _health_port,
    "health_headers": _health_headers,
    "health_interval": _health_interval,
    "health_timeout": _health_timeout,
    "health_status": _health_status,
    "health_body": _health_body,
    "health_passes": _health_passes,
    "health_fails": _health_fails,
    "max_fails": _max_fails,
    "fail_duration": _fail_duration,
    "unhealthy_request_count": _unhealthy_request_count,
    "unhealthy_status": _unhealthy_status,
    "unhealthy_latency": _unhealthy_latency,
}

_ACTIVE_FIELDS = (
    "path",
    "uri",
    "port",
    "headers",
    "interval",
    "timeout",
    "passes",
    "fails",
    "max_size",
    "expect_status",
    "expect_body",
)
_PASSIVE_FIELDS = (
    "fail_duration",
    "max_fails",
    "unhealthy_request_count",
    "unhealthy_status",
    "unhealthy_latency",
)


def health_checks_json(health_checks: JSONObject) -> JSONObject:
    """reverseproxy.HealthChecks: each present half with its zero fields omitted."""
    out: JSONObject = {}
    for kind, fields in (("active", _ACTIVE_FIELDS), ("passive", _PASSIVE_FIELDS)):
        if kind in health_checks:
            checks = health_checks[kind]
            out[kind] = struct(*((key, checks.get(key)) for key in fields))
    return out
