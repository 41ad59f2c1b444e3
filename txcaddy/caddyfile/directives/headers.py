"""The ``header`` and ``request_header`` directives (Caddy's headers/caddyfile.go).

Both build ``headers`` handlers. Field prefixes choose the operation: ``+``
adds, ``-`` deletes (and defers a response operation until the response is
written), ``?`` sets a response header only if it is absent (a separate
handler with a ``require`` matcher), and a third argument turns the second
into a search regexp to replace. The operations themselves
(``apply_header_op``, Caddy's ``headers.CaddyfileHeaderOp``) are shared with
``reverse_proxy``'s ``header_up``/``header_down``, which import them from here.
"""

from __future__ import annotations

from txcaddy._go.textproto import canonical_mime_header_key as canonical_header_key
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive

__all__ = ["apply_header_op", "header_op"]

_HEADER_OPS_ORDER = ("add", "set", "delete", "replace", "require", "deferred")


def apply_header_op(
    ops: JSONObject, field: str, value: str, replacement: str, *, response: bool = False
) -> None:
    """Add one Caddyfile header operation to a ``HeaderOps`` JSON object.

    ``field`` may carry Caddy's prefixes: ``+`` add, ``-`` delete, ``?`` set
    as a default (only when ``response`` is true: ``ops`` is then a
    ``RespHeaderOps`` and ``-`` marks it deferred). A non-empty
    ``replacement`` makes ``value`` a regexp to replace. Raises ValueError
    with Caddy's message; the caller turns it into a parse error.
    """
    if field.startswith("+"):
        add = ops.setdefault("add", GoMap())
        key = canonical_header_key(field[1:])
        add[key] = (add.get(key) or []) + [value]
    elif field.startswith("-"):
        ops.setdefault("delete", []).append(field[1:])
        if response:
            ops["deferred"] = True
    elif field.startswith("?"):
        if not response:
            raise ValueError(
                f"{field}: the default header modifier ('?') can only be used on response "
                "headers; for conditional manipulation of request headers, use matchers"
            )
        field = field[1:]
        ops.setdefault("require", {"headers": GoMap()})["headers"][field] = None
        ops.setdefault("set", GoMap())[canonical_header_key(field)] = [value]
    elif replacement != "":
        field = field.lstrip("+-?")
        # a Go struct with omitempty fields: an empty search regexp is left out
        replace = {"search_regexp": value} if value else {}
        replace["replace"] = replacement
        ops.setdefault("replace", GoMap()).setdefault(field, []).append(replace)
    else:
        ops.setdefault("set", GoMap())[canonical_header_key(field)] = [value]
    known = [(key, ops.pop(key)) for key in _HEADER_OPS_ORDER if key in ops]
    rest = list(ops.items())
    ops.clear()
    ops.update(known + rest)


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
