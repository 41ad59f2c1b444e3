"""Load balancing of ``reverse_proxy``: ``lb_policy`` and the retry options.

Selection policies are guest modules (``http.reverse_proxy.selection_policies``).
Newer Caddy policies are accepted too: ``client_ip_hash``, ``query`` and
``weighted_round_robin`` and the ``fallback`` block of ``header``, ``cookie``
and ``query`` (Caddy 2.7; weights of 0 from 2.9; ``cookie``'s ``max_age``
from 2.9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from txcaddy._go.strconv import atoi as go_atoi
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.directives.matchers import parse_nested_matcher_set
from txcaddy.caddyfile.directives.reverseproxy._common import (
    Context,
    ModuleParser,
    SubdirectiveParser,
    duration_arg,
    integer_arg,
    struct,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.config.values import parse_caddy_duration

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig


def _policy_without_args(d: Dispenser, ctx: Context) -> JSONObject:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return {}


def _policy_random_choose(d: Dispenser, ctx: Context) -> JSONObject:
    choose = 0
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        try:
            choose = go_atoi(d.val())
        except ValueError as e:
            raise d.err(f"invalid choice value '{d.val()}': {e}")
    return struct(("choose", choose))


def _fallback_option(d: Dispenser, ctx: Context, current: GoMap | None) -> GoMap:
    """``fallback <policy> [<args>] [{…}]``, the cursor on ``fallback`` (Caddy 2.7)."""
    if not d.next_arg():
        raise d.arg_err()
    if current is not None:
        raise d.err("fallback selection policy already specified")
    name = d.val()
    policy = unmarshal_module(
        d, "http.reverse_proxy.selection_policies", name, SELECTION_POLICIES, ctx
    )
    return module_object(policy, "policy", name)


def _policy_fallback(d: Dispenser, ctx: Context) -> GoMap | None:
    """The ``{ fallback <policy> }`` block of ``header`` and ``query`` (Caddy 2.7)."""
    fallback = None
    while d.next_block(0):
        if d.val() != "fallback":
            raise d.err(f"unrecognized option '{d.val()}'")
        fallback = _fallback_option(d, ctx, fallback)
    return fallback


def _policy_header(d: Dispenser, ctx: Context) -> JSONObject:
    """``header <field> [{ fallback <policy> }]`` (the block from Caddy 2.7)."""
    d.next()
    if not d.next_arg():
        raise d.arg_err()
    field = d.val()
    # Caddy 2.6.2 reads further arguments in pairs, the last one being the field
    while d.next_arg():
        if not d.next_arg():
            raise d.arg_err()
        field = d.val()
    return struct(("field", field), ("fallback", _policy_fallback(d, ctx)))


def _policy_cookie(d: Dispenser, ctx: Context) -> JSONObject:
    """``cookie [<name> [<secret>]] [{ fallback <policy>; max_age <duration> }]``.

    The block is newer than 2.6.2: ``fallback`` from Caddy 2.7, ``max_age`` from 2.9.
    """
    args = d.remaining_args()
    if len(args) not in (1, 2, 3):
        raise d.arg_err()
    name = args[1] if len(args) > 1 else ""
    secret = args[2] if len(args) > 2 else ""
    fallback = None
    max_age = 0
    while d.next_block(0):
        option = d.val()
        if option == "fallback":
            fallback = _fallback_option(d, ctx, fallback)
        elif option == "max_age":
            if not d.next_arg():
                raise d.arg_err()
            if max_age:
                raise d.err("cookie max_age already specified")
            try:
                max_age = parse_caddy_duration(d.val())
            except ValueError:
                raise d.err(f"invalid duration: {d.val()}") from None
            if max_age <= 0:
                raise d.err(f"invalid duration: {d.val()}, max_age should be non-zero and positive")
            if d.next_arg():
                raise d.arg_err()
        else:
            raise d.err(f"unrecognized option '{option}'")
    return struct(("name", name), ("secret", secret), ("max_age", max_age), ("fallback", fallback))


def _policy_client_ip_hash(d: Dispenser, ctx: Context) -> JSONObject:
    """Caddy 2.7: hash of the client IP (trusted proxies considered)."""
    d.next()
    if d.next_arg():
        raise d.arg_err()
    return {}


def _policy_query(d: Dispenser, ctx: Context) -> JSONObject:
    """Caddy 2.7: ``query <key> [{ fallback <policy> }]``."""
    d.next()
    if not d.next_arg():
        raise d.arg_err()
    key = d.val()
    return struct(("key", key), ("fallback", _policy_fallback(d, ctx)))


def _policy_weighted_round_robin(d: Dispenser, ctx: Context) -> JSONObject:
    """Caddy 2.7: ``weighted_round_robin <weight...>``, one weight per upstream."""
    d.next()
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    weights = []
    for weight in args:
        try:
            value = go_atoi(weight)
        except ValueError as e:
            raise d.err(f"invalid weight value '{weight}': {e}")
        if value < 0:
            raise d.err(f"invalid weight value '{weight}': weight should be non-negative")
        weights.append(value)
    return struct(("weights", weights))


SELECTION_POLICIES: dict[str, ModuleParser] = {
    "random": _policy_without_args,
    "random_choose": _policy_random_choose,
    "least_conn": _policy_without_args,
    "round_robin": _policy_without_args,
    "first": _policy_without_args,
    "ip_hash": _policy_without_args,
    "uri_hash": _policy_without_args,
    "header": _policy_header,
    "cookie": _policy_cookie,
    "client_ip_hash": _policy_client_ip_hash,
    "query": _policy_query,
    "weighted_round_robin": _policy_weighted_round_robin,
}


# ---------------------------------------------------------------------------
# The subdirectives, filling in the handler's LoadBalancing (created on first use)


def _load_balancing(config: ReverseProxyConfig) -> JSONObject:
    if config.load_balancing is None:
        config.load_balancing = {}
    return config.load_balancing


def _lb_policy(config: ReverseProxyConfig, d: Dispenser) -> None:
    if not d.next_arg():
        raise d.arg_err()
    if config.load_balancing is not None and "selection_policy" in config.load_balancing:
        raise d.err("load balancing selection policy already specified")
    policy_name = d.val()
    policy = unmarshal_module(
        d,
        "http.reverse_proxy.selection_policies",
        policy_name,
        SELECTION_POLICIES,
        config.ctx,
    )
    _load_balancing(config)["selection_policy"] = module_object(policy, "policy", policy_name)


def _lb_retries(config: ReverseProxyConfig, d: Dispenser) -> None:
    retries = integer_arg(d, "bad lb_retries number '{value}': {err}")
    _load_balancing(config)["retries"] = retries


def _lb_try_duration(config: ReverseProxyConfig, d: Dispenser) -> None:
    _load_balancing(config)["try_duration"] = duration_arg(d, "bad duration value {value}: {err}")


def _lb_try_interval(config: ReverseProxyConfig, d: Dispenser) -> None:
    _load_balancing(config)["try_interval"] = duration_arg(
        d, "bad interval value '{value}': {err}"
    )


def _lb_retry_match(config: ReverseProxyConfig, d: Dispenser) -> None:
    try:
        matcher_set = parse_nested_matcher_set(d)
    except ConfigError as e:
        raise d.err(f"failed to parse lb_retry_match: {e}")
    _load_balancing(config).setdefault("retry_match", []).append(matcher_set)


SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "lb_policy": _lb_policy,
    "lb_retries": _lb_retries,
    "lb_try_duration": _lb_try_duration,
    "lb_try_interval": _lb_try_interval,
    "lb_retry_match": _lb_retry_match,
}

_LOAD_BALANCING_FIELDS = (
    "selection_policy",
    "retries",
    "try_duration",
    "try_interval",
    "retry_match",
)


def load_balancing_json(load_balancing: JSONObject) -> JSONObject:
    """reverseproxy.LoadBalancing, its zero fields omitted."""
    return struct(*((key, load_balancing.get(key)) for key in _LOAD_BALANCING_FIELDS))
