"""``rewrite``, ``method``, ``uri`` and ``handle_path`` (Caddy's rewrite/caddyfile.go).

All of them produce ``rewrite`` handlers; ``handle_path`` is ``handle`` with
a path matcher whose prefix is stripped from the request path first.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.strconv import atoi
from txcaddy.caddyfile._routes import parse_segment_as_subroute
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject, Route
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive, handler_directive

_REWRITE_FIELDS = (
    "method",
    "uri",
    "strip_path_prefix",
    "strip_path_suffix",
    "uri_substring",
    "path_regexp",
)


def rewrite_handler(**fields: Any) -> GoMap:
    """The ``rewrite`` handler's JSON; empty fields are left out as Go's omitempty does."""
    body = {name: fields[name] for name in _REWRITE_FIELDS if fields.get(name)}
    return module_object(body, "handler", "rewrite")


def _one_argument(h: Helper) -> str:
    """The single argument of each line (the last line wins)."""
    value = ""
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        value = h.val()
        if h.next_arg():
            raise h.arg_err()
    return value


@handler_directive("rewrite")
def parse_rewrite(h: Helper) -> JSONObject:
    """``rewrite [<matcher>] <to>``."""
    return rewrite_handler(uri=_one_argument(h))


@handler_directive("method")
def parse_method(h: Helper) -> JSONObject:
    """``method [<matcher>] <method>``."""
    return rewrite_handler(method=_one_argument(h))


@handler_directive("uri")
def parse_uri(h: Helper) -> JSONObject:
    """``uri [<matcher>] strip_prefix|strip_suffix|replace|path_regexp ...``."""
    strip_prefix = strip_suffix = ""
    substrings: list[JSONObject] = []
    regexps: list[JSONObject] = []
    while h.next():
        args = h.remaining_args()
        if len(args) < 2:
            raise h.arg_err()
        operation = args[0]
        if operation == "strip_prefix":
            if len(args) > 2:
                raise h.arg_err()
            strip_prefix = args[1]
            if not strip_prefix.startswith("/"):
                strip_prefix = "/" + strip_prefix
        elif operation == "strip_suffix":
            if len(args) > 2:
                raise h.arg_err()
            strip_suffix = args[1]
        elif operation == "replace":
            if len(args) not in (3, 4):
                raise h.arg_err()
            limit = 0
            if len(args) == 4 and args[3] != "":
                try:
                    limit = atoi(args[3])
                except ValueError as e:
                    raise h.err(f"limit must be an integer; invalid: {e}") from None
            replacer: JSONObject = {}
            for key, value in (("find", args[1]), ("replace", args[2]), ("limit", limit)):
                if value:
                    replacer[key] = value
            substrings.append(replacer)
        elif operation == "path_regexp":
            if len(args) != 3:
                raise h.arg_err()
            replacer = {}
            for key, value in (("find", args[1]), ("replace", args[2])):
                if value:
                    replacer[key] = value
            regexps.append(replacer)
        else:
            raise h.err(f"unrecognized URI manipulation '{operation}'")
    return rewrite_handler(
        strip_path_prefix=strip_prefix,
        strip_path_suffix=strip_suffix,
        uri_substring=substrings,
        path_regexp=regexps,
    )


@directive("handle_path")
def parse_handle_path(h: Helper) -> list[ConfigValue]:
    """``handle_path <path> { ... }``: a ``handle`` block that strips the matched prefix.

    The path is the route's only matcher (named matchers are not allowed);
    its prefix (without a trailing ``*`` or ``/*``) is stripped by a
    ``rewrite`` route put in front of the block's routes.
    """
    if not h.next():
        raise h.arg_err()
    if not h.next_arg():
        raise h.arg_err()
    path = h.val()
    if not path.startswith("/"):
        raise h.err(f"path matcher must begin with '/', got {path}")
    if path.endswith("/*"):
        strip = path[:-2]
    elif path.endswith("*"):
        strip = path[:-1]
    else:
        strip = path

    # Like Caddy, rewind so that the path token plays the directive name's
    # part for the segment parser (which refuses arguments after it).
    h.reset()
    h.next()
    subroute = parse_segment_as_subroute(h)
    subroute.routes.insert(0, Route(handle=[rewrite_handler(strip_path_prefix=strip)]))
    handler = module_object(subroute.to_handler(), "handler", "subroute")
    return h.new_route(GoMap(path=[path]), handler)
