"""Directives that build a ``reverse_proxy``: ``php_fastcgi`` and ``forward_auth``.

Each rewrites its own block into routes around a ``reverse_proxy`` handler,
removing the tokens it consumed (as Caddy's shortcuts do) so that the rest
of the block is parsed as ``reverse_proxy`` subdirectives.
"""

from __future__ import annotations

from txcaddy.caddyfile.directives.matchers import canonical_header_key
from txcaddy.caddyfile.directives.reverseproxy._common import struct
from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig
from txcaddy.caddyfile.directives.reverseproxy._transport import FastCGITransport
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import ConfigValue, Helper, Route, Subroute
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive
from txcaddy.config.values import parse_caddy_duration

# ---------------------------------------------------------------------------
# php_fastcgi


def _delete_args(dispenser: Dispenser, args: list[str]) -> None:
    """Remove a subdirective and its arguments (the cursor is on the last argument)."""
    dispenser.delete()
    for _ in args:
        dispenser.delete()


@directive("php_fastcgi")
def parse_php_fastcgi(h: Helper) -> list[ConfigValue]:
    """``php_fastcgi``: try_files-style rewrites plus reverse_proxy over FastCGI."""
    if not h.next():
        raise h.arg_err()
    transport = FastCGITransport()
    extensions = [".php"]
    index_file = "index.php"
    try_files: list[str] = []

    user_matcher_set = h.extract_matcher_set()
    dispenser = h.new_from_next_segment()

    while dispenser.next():
        while dispenser.next_block(0):
            if dispenser.nesting != 1:
                continue
            name = dispenser.val()
            if name == "root":
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                transport.root = dispenser.val()
                dispenser.delete()
                dispenser.delete()
            elif name == "split":
                extensions = dispenser.remaining_args()
                _delete_args(dispenser, extensions)
                if not extensions:
                    raise dispenser.arg_err()
            elif name == "env":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if len(args) != 2:
                    raise dispenser.arg_err()
                if transport.env is None:
                    transport.env = GoMap()
                transport.env[args[0]] = args[1]
            elif name == "index":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if len(args) != 1:
                    raise dispenser.arg_err()
                index_file = args[0]
            elif name == "try_files":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if not args:
                    raise dispenser.arg_err()
                try_files = args
            elif name == "resolve_root_symlink":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                transport.resolve_root_symlink = True
            elif name in ("dial_timeout", "read_timeout", "write_timeout"):
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                try:
                    setattr(transport, name, parse_caddy_duration(dispenser.val()))
                except ValueError as e:
                    raise dispenser.err(f"bad timeout value {dispenser.val()}: {e}")
                dispenser.delete()
                dispenser.delete()
            elif name == "capture_stderr":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                transport.capture_stderr = True

    dispenser.reset()
    transport.split_path = extensions
    routes: list[Route] = []

    if index_file != "off":
        redirect_matcher = GoMap(
            file={"try_files": ["{http.request.uri.path}/" + index_file]},
            **{"not": [GoMap(path=["*/"])]},
        )
        redirect_handler = module_object(
            {
                "status_code": 308,
                "headers": GoMap(Location=["{http.request.orig_uri.path}/"]),
            },
            "handler",
            "static_response",
        )
        routes.append(Route(handle=[redirect_handler], match=[redirect_matcher]))
        if not try_files:
            try_files = [
                "{http.request.uri.path}",
                "{http.request.uri.path}/" + index_file,
                index_file,
            ]
        rewrite_matcher = GoMap(file={"try_files": try_files, "split_path": extensions})
        rewrite_handler = module_object(
            {"uri": "{http.matchers.file.relative}"}, "handler", "rewrite"
        )
        routes.append(Route(handle=[rewrite_handler], match=[rewrite_matcher]))

    proxy_matcher = GoMap(path=["*" + ext for ext in extensions])
    config = ReverseProxyConfig(h)
    config.transport_raw = module_object(transport.to_json(), "protocol", "fastcgi")
    config.parse(dispenser)
    config.finalize()
    routes.append(Route(handle=[config.to_json()], match=[proxy_matcher]))
    subroute = Subroute(routes=routes)

    if user_matcher_set is not None:
        wrapped = module_object(subroute.to_handler(), "handler", "subroute")
        return [ConfigValue("route", Route(handle=[wrapped], match=[user_matcher_set]))]
    return [ConfigValue("route", subroute)]


# ---------------------------------------------------------------------------
# forward_auth


@directive("forward_auth")
def parse_forward_auth(h: Helper) -> list[ConfigValue]:
    """``forward_auth``: ask an auth server first, copy some of its headers, then go on."""
    if not h.next():
        raise h.arg_err()
    user_matcher_set = h.extract_matcher_set()
    dispenser = h.new_from_next_segment()

    config = ReverseProxyConfig(h)
    config.headers = {
        "request": {
            "set": GoMap(
                {
                    "X-Forwarded-Method": ["{http.request.method}"],
                    "X-Forwarded-Uri": ["{http.request.uri}"],
                }
            )
        }
    }
    config.rewrite = {"method": "GET"}
    headers_to_copy: dict[str, str] = {}

    while dispenser.next():
        while dispenser.next_block(0):
            if dispenser.nesting != 1:
                continue
            name = dispenser.val()
            if name == "uri":
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                config.rewrite["uri"] = dispenser.val()
                dispenser.delete()
                dispenser.delete()
            elif name == "copy_headers":
                args = dispenser.remaining_args()
                had_block = False
                nesting = dispenser.nesting
                while dispenser.next_block(nesting):
                    had_block = True
                    args.append(dispenser.val())
                dispenser.delete()
                if had_block:
                    dispenser.delete()
                    dispenser.delete()
                for _ in args:
                    dispenser.delete()
                for field in args:
                    if ">" in field:
                        parts = field.split(">")
                        headers_to_copy[parts[0]] = parts[1]
                    else:
                        headers_to_copy[field] = field
                if not headers_to_copy:
                    raise dispenser.arg_err()

    dispenser.reset()
    if not config.rewrite.get("uri"):
        raise dispenser.err("the 'uri' subdirective is required")

    copy_set = GoMap()
    for source, target in headers_to_copy.items():
        copy_set[canonical_header_key(target)] = [
            "{http.reverse_proxy.header." + canonical_header_key(source) + "}"
        ]
    copy_handler = module_object({"request": struct(("set", copy_set))}, "handler", "headers")
    config.handle_response.append(
        {"match": {"status_code": [2]}, "routes": [Route(handle=[copy_handler])]}
    )

    config.parse(dispenser)
    config.finalize()
    route = Route(handle=[config.to_json()])
    if user_matcher_set is not None:
        route.match = [user_matcher_set]
    return [ConfigValue("route", route)]
