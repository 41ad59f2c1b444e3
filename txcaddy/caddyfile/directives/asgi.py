"""``asgi``: the Caddyfile form of the ``asgi`` handler (txcaddy's own; Caddy has no such directive).

    asgi [<matcher>] <module:app> {
        lifespan auto|on|off
        root_path /prefix
    }

adapts to ``{"handler": "asgi", "app": "module:app", "lifespan": ..., "root_path": ...}``
(``lifespan`` and ``root_path`` only when given; the handler's default lifespan is ``auto``).
"""

from __future__ import annotations

from txcaddy.caddyfile.helper import Helper, JSONObject
from txcaddy.caddyfile.registry import handler_directive

_LIFESPAN = ("auto", "on", "off")


@handler_directive("asgi")
def parse_asgi(h: Helper) -> JSONObject:
    app = lifespan = root_path = ""
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        if app:
            raise h.err("app already specified")
        app = h.val()
        if ":" not in app:
            raise h.err(f"the app must be module:attribute, got '{app}'")
        if h.next_arg():
            raise h.arg_err()
        while h.next_block(0):
            sub = h.val()
            args = h.remaining_args()
            if len(args) != 1:
                raise h.arg_err()
            if sub == "lifespan":
                if args[0] not in _LIFESPAN:
                    raise h.err(f"lifespan must be auto, on or off, got '{args[0]}'")
                lifespan = args[0]
            elif sub == "root_path":
                if not args[0].startswith("/"):
                    raise h.err(f"root_path must start with '/', got '{args[0]}'")
                root_path = args[0]
            else:
                raise h.err(f"unrecognized subdirective '{sub}'")
    out: JSONObject = {"handler": "asgi", "app": app}
    if lifespan:
        out["lifespan"] = lifespan
    if root_path:
        out["root_path"] = root_path
    return out
