"""``copy_response`` and ``copy_response_headers``, the handlers used inside ``handle_response``.

They copy the upstream's response (status, body, headers) that
``handle_response`` held back; Caddy registers them with ``reverse_proxy``.
"""

from __future__ import annotations

from txcaddy._go.strconv import atoi as go_atoi
from txcaddy.caddyfile.directives.reverseproxy._common import struct
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import Helper, JSONObject
from txcaddy.caddyfile.jsonenc import module_object, weak_string
from txcaddy.caddyfile.registry import handler_directive


@handler_directive("copy_response")
def parse_copy_response(h: Helper) -> JSONObject:
    """``copy_response [<matcher>] [<status>] { status <status> }`` (inside handle_response)."""
    d: Dispenser = h.dispenser
    status = ""
    while d.next():
        args = d.remaining_args()
        if len(args) == 1:
            try:
                number = go_atoi(args[0])
            except ValueError:
                number = 0
            if number > 0:
                status = args[0]
                break
        while d.next_block(0):
            if d.val() == "status":
                if not d.next_arg():
                    raise d.arg_err()
                status = d.val()
            else:
                raise d.err(f"unrecognized subdirective '{d.val()}'")
    handler: JSONObject = {}
    if status:
        handler["status_code"] = weak_string(status)
    return module_object(handler, "handler", "copy_response")


@handler_directive("copy_response_headers")
def parse_copy_response_headers(h: Helper) -> JSONObject:
    """``copy_response_headers [<matcher>] { include <fields...>; exclude <fields...> }``."""
    d: Dispenser = h.dispenser
    include: list[str] = []
    exclude: list[str] = []
    while d.next():
        if d.remaining_args():
            raise d.arg_err()
        while d.next_block(0):
            if d.val() == "include":
                include.extend(d.remaining_args())
            elif d.val() == "exclude":
                exclude.extend(d.remaining_args())
            else:
                raise d.err(f"unrecognized subdirective '{d.val()}'")
    handler = struct(("include", include), ("exclude", exclude))
    return module_object(handler, "handler", "copy_response_headers")
