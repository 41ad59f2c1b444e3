"""Caddy's built-in HTTP directives: bind, root, vars, redir, respond, abort,
error, route, handle, handle_errors, skip_log (httpcaddyfile/builtins.go)."""

from __future__ import annotations

from txcaddy._go.fmt import sprint_go_syntax
from txcaddy._go.html import escape_string
from txcaddy._go.strconv import NumError, atoi
from txcaddy.caddyfile._routes import parse_segment_as_config, parse_segment_as_subroute
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject, Route, Subroute
from txcaddy.caddyfile.jsonenc import GoMap, weak_string
from txcaddy.caddyfile.registry import directive, handler_directive


@directive("bind")
def parse_bind(h: Helper) -> list[ConfigValue]:
    hosts: list[str] = []
    while h.next():
        hosts.extend(h.remaining_args())
    return h.new_bind_addresses(hosts)


@handler_directive("root")
def parse_root(h: Helper) -> JSONObject:
    root = ""
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        root = h.val()
        if h.next_arg():
            raise h.arg_err()
    return {"handler": "vars", "root": root}


@handler_directive("vars")
def parse_vars(h: Helper) -> JSONObject:
    values: dict[str, object] = {}

    def next_var(header_line: bool) -> None:
        if header_line and not h.next_arg():
            return
        name = h.val()
        if not h.next_arg():
            raise h.arg_err()
        values[name] = h.scalar_val()
        if h.next_arg():
            raise h.arg_err()

    while h.next():
        next_var(True)
        nesting = h.nesting
        while h.next_block(nesting):
            next_var(False)
    out: JSONObject = {"handler": "vars"}
    out.update(sorted(values.items()))  # a Go map: keys sorted
    return out


_META_REDIRECT = """<!DOCTYPE html>
<html>
	<head>
		<title>Redirecting...</title>
		<script>window.location.replace("{0}");</script>
		<meta http-equiv="refresh" content="0; URL='{0}'">
	</head>
	<body>Redirecting to <a href="{0}">{0}</a>...</body>
</html>
"""


@handler_directive("redir")
def parse_redir(h: Helper) -> JSONObject:
    if not h.next():
        raise h.arg_err()
    if not h.next_arg():
        raise h.arg_err()
    to = h.val()
    code = h.val() if h.next_arg() else ""
    body = ""
    if code == "permanent":
        code = "301"
    elif code in ("temporary", ""):
        code = "302"
    elif code == "html":
        body = _META_REDIRECT.format(escape_string(to))
        code = "200"
    elif not code.startswith("{"):
        try:
            number = atoi(code)
        except NumError:
            raise h.err(f"Not a supported redir code type or not valid integer: '{code}'") from None
        if number < 300 or (number > 399 and number != 401):
            raise h.err(f"Redir code not in the 3xx range or 401: '{number}'")
    out: JSONObject = {"handler": "static_response", "status_code": weak_string(code)}
    if code != "200":
        out["headers"] = GoMap(Location=[to])
    if body:
        out["body"] = body
    return out


def _positive_int(text: str) -> bool:
    """Whether ``strconv.Atoi`` reads ``text`` as a number above zero."""
    try:
        return atoi(text) > 0
    except NumError:
        return False


def _status_and_text(h: Helper, text_field: str) -> tuple[str, str]:
    args = h.remaining_args()
    status = text = ""
    if len(args) == 1:
        if len(args[0]) == 3 and _positive_int(args[0]):
            status = args[0]
        else:
            text = args[0]
    elif len(args) == 2:
        text, status = args
    else:
        raise h.arg_err()
    return status, text


@handler_directive("respond")
def parse_respond(h: Helper) -> JSONObject:
    status = body = ""
    close = False
    while h.next():
        status, body = _status_and_text(h, "body")
        while h.next_block(0):
            sub = h.val()
            if sub == "body":
                if body:
                    raise h.err("body already specified")
                args = h.all_args(1)
                if args is None:
                    raise h.arg_err()
                body = args[0]
            elif sub == "close":
                if close:
                    raise h.err("close already specified")
                close = True
            else:
                raise h.err(f"unrecognized subdirective '{sub}'")
    out: JSONObject = {"handler": "static_response"}
    if status:
        out["status_code"] = weak_string(status)
    if body:
        out["body"] = body
    if close:
        out["close"] = True
    return out


@handler_directive("abort")
def parse_abort(h: Helper) -> JSONObject:
    h.next()
    if h.next() or h.next_block(0):
        raise h.arg_err()
    return {"handler": "static_response", "abort": True}


@handler_directive("error")
def parse_error(h: Helper) -> JSONObject:
    status = message = ""
    while h.next():
        status, message = _status_and_text(h, "error")
        while h.next_block(0):
            sub = h.val()
            if sub == "message":
                if message:
                    raise h.err("message already specified")
                args = h.all_args(1)
                if args is None:
                    raise h.arg_err()
                message = args[0]
            else:
                raise h.err(f"unrecognized subdirective '{sub}'")
    out: JSONObject = {"handler": "error"}
    if message:
        out["error"] = message
    if status:
        out["status_code"] = weak_string(status)
    return out


@handler_directive("route")
def parse_route(h: Helper) -> JSONObject:
    subroute = Subroute()
    for value in parse_segment_as_config(h):
        if isinstance(value.value, Route):
            subroute.routes.append(value.value)
        elif isinstance(value.value, Subroute):
            subroute.routes.extend(value.value.routes)
        else:
            raise h.err(
                f"{value.directive} directive returned something other than an HTTP route or "
                f"subroute: {sprint_go_syntax(value.value)} (only handler directives can be used in routes)"
            )
    return subroute.to_handler()


@handler_directive("handle")
def parse_handle(h: Helper) -> JSONObject:
    return parse_segment_as_subroute(h).to_handler()


@directive("handle_errors")
def parse_handle_errors(h: Helper) -> list[ConfigValue]:
    return [ConfigValue("error_route", parse_segment_as_subroute(h))]


@handler_directive("skip_log")
def parse_skip_log(h: Helper) -> JSONObject:
    while h.next():
        if h.next_arg():
            raise h.arg_err()
    return {"handler": "vars", "skip_log": True}
