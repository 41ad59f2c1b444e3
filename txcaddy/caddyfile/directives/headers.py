"""The ``header`` and ``request_header`` directives (Caddy's headers/caddyfile.go).

Both build ``headers`` handlers. Field prefixes choose the operation: ``+``
adds, ``-`` deletes (and defers a response operation until the response is
written), ``?`` sets a response header only if it is absent (a separate
handler with a ``require`` matcher), and a third argument turns the second
into a search regexp to replace. The operations themselves are shared with
``reverse_proxy``'s ``header_up``/``header_down`` (``apply_header_op``).
"""

from __future__ import annotations

from txcaddy.caddyfile.directives.reverseproxy import apply_header_op
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive

__all__ = ["apply_header_op", "header_op"]


def header_op(
    h: Helper, ops: JSONObject, field: str, value: str, replacement: str, *, response: bool
) -> None:
    """Apply one operation, reporting Caddy's message at the current token."""
    try:
        apply_header_op(ops, field, value, replacement, response=response)
    except ValueError as e:
        raise h.err(str(e)) from None


def _headers_route(h: Helper, matcher_set: GoMap | None, handler: JSONObject) -> list[ConfigValue]:
    return h.new_route(matcher_set, module_object(handler, "handler", "headers"))


def _value_and_replacement(h: Helper) -> tuple[str, str]:
    value = replacement = ""
    if h.next_arg():
        value = h.val()
    if h.next_arg():
        replacement = h.val()
    return value, replacement


@directive("header")
def parse_header(h: Helper) -> list[ConfigValue]:
    """``header [<matcher>] [[+|-|?]<field> [<value>|<find>] [<replace>]] { ... ; defer }``.

    The ``?field`` lines of a block go to a second handler, so that their
    ``require`` condition does not guard the other operations.
    """
    if not h.next():
        raise h.arg_err()
    matcher_set = h.extract_matcher_set()
    # The RespHeaderOps of each handler (its embedded HeaderOps are flattened).
    response: JSONObject = {}
    response_if_absent: JSONObject = {}
    while h.next():
        has_args = False
        if h.next_arg():
            has_args = True
            field = h.val()
            value, replacement = _value_and_replacement(h)
            header_op(h, response, field, value, replacement, response=True)
            if response.get("delete"):
                response["deferred"] = True
        while h.next_block(0):
            field = h.val()
            if field == "defer":
                response["deferred"] = True
                continue
            if has_args:
                raise h.err("cannot specify headers in both arguments and block")
            field = field.removesuffix(":")
            value, replacement = _value_and_replacement(h)
            target = response_if_absent if field.startswith("?") else response
            header_op(h, target, field, value, replacement, response=True)
    values: list[ConfigValue] = []
    for ops in (response, response_if_absent):
        if ops:
            values.extend(_headers_route(h, matcher_set, {"response": ops}))
    return values


@directive("request_header")
def parse_request_header(h: Helper) -> list[ConfigValue]:
    """``request_header [<matcher>] [+|-]<field> [<value>|<find>] [<replace>]``."""
    if not h.next():
        raise h.arg_err()
    matcher_set = h.extract_matcher_set()
    values: list[ConfigValue] = []
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        field = h.val().removesuffix(":")
        value = replacement = ""
        if h.next_arg():
            value = h.val()
        if h.next_arg():
            replacement = h.val()
            if h.next_arg():
                raise h.arg_err()
        ops: JSONObject = {}
        header_op(h, ops, field, value, replacement, response=False)
        values.extend(_headers_route(h, matcher_set, {"request": ops}))
        if h.next_arg():
            raise h.arg_err()
    return values
