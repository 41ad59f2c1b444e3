"""txcaddy's own directives for Python web applications: ``wsgi`` and ``twisted_resource``.

Caddy has no such directives; their JSON is that of the handlers in
``txcaddy/http/handlers/wsgi.py`` and ``twistedresource.py``. Both take the
application as ``module:name`` (or ``module:factory()``), imported when the
config loads.
"""

from __future__ import annotations

from txcaddy._go.strconv import atoi
from txcaddy.caddyfile.helper import Helper, JSONObject
from txcaddy.caddyfile.registry import handler_directive


def _count(h: Helper, name: str, minimum: int) -> int:
    args = h.all_args(1)
    if args is None:
        raise h.arg_err()
    try:
        value = atoi(args[0])
    except ValueError:
        raise h.err(f"{name} must be a whole number, got {args[0]!r}") from None
    if value < minimum:
        raise h.err(f"{name} must be at least {minimum}, got {value}")
    return value


@handler_directive("wsgi")
def parse_wsgi(h: Helper) -> JSONObject:
    """``wsgi [<matcher>] <module:app> { threads <n>; queue <n>; root_path <prefix> }``."""
    out: JSONObject = {"handler": "wsgi"}
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        out["app"] = h.val()
        if h.next_arg():
            raise h.arg_err()
        while h.next_block(0):
            option = h.val()
            if option == "threads":
                out["threads"] = _count(h, "threads", 1)
            elif option == "queue":
                out["queue"] = _count(h, "queue", 0)
            elif option == "root_path":
                args = h.all_args(1)
                if args is None:
                    raise h.arg_err()
                if not args[0].startswith("/"):
                    raise h.err(f"root_path must start with '/', got {args[0]!r}")
                out["root_path"] = args[0]
            else:
                raise h.err(f"unrecognized wsgi option '{option}'")
    return out


@handler_directive("twisted_resource")
def parse_twisted_resource(h: Helper) -> JSONObject:
    """``twisted_resource [<matcher>] <module:factory>``."""
    out: JSONObject = {"handler": "twisted_resource"}
    while h.next():
        args = h.all_args(1)
        if args is None:
            raise h.arg_err()
        out["resource"] = args[0]
        if h.next_block(0):
            raise h.err(f"twisted_resource takes no options, got '{h.val()}'")
    return out
