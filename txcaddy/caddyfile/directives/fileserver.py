"""``file_server`` and ``try_files`` (Caddy's fileserver/caddyfile.go).

``file_server`` always hides the Caddyfile(s) the site was read from (unless
a ``hide`` entry already covers them), so a static site rooted at the config
directory does not serve its own configuration. ``try_files`` is a
``rewrite`` behind a ``file`` matcher; a try entry with a query string gets
a route of its own so the query can be appended to the rewritten URI.
"""

from __future__ import annotations

from txcaddy._go.path import abs_path, clean, match
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.directives.matchers import file_matcher_json
from txcaddy.caddyfile.directives.rewrite import rewrite_handler
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject, hide_path
from txcaddy.caddyfile.jsonenc import GoMap, module_object, weak_string
from txcaddy.caddyfile.registry import directive, handler_directive

SEPARATOR = "/"

# The http.precompressed.* modules of Caddy 2.6.2 as packaged.
PRECOMPRESSORS = ("br", "gzip", "zstd")

TRY_POLICIES = ("first_exist", "largest_size", "smallest_size", "most_recently_modified")


def file_hidden(filename: str, hide: list[str]) -> bool:
    """Caddy's fileHidden: whether ``hide`` already covers ``filename``."""
    if not hide:
        return False
    filename = abs_path(filename)
    components: list[str] | None = None
    for entry in hide:
        if SEPARATOR not in entry:
            # A bare name hides that name anywhere in the path.
            if components is None:
                components = filename.split(SEPARATOR)
            if any(match(entry, component) for component in components):
                return True
        elif filename.startswith(entry) and filename[len(entry):].startswith(SEPARATOR):
            return True
        if match(entry, filename):
            return True
    return False


# -- file_server ---------------------------------------------------------------------


@handler_directive("file_server")
def parse_file_server(h: Helper) -> JSONObject:
    """``file_server [<matcher>] [browse] { fs, root, hide, index, browse, precompressed,
    status, disable_canonical_uris, pass_thru }``."""
    server: JSONObject = {}
    hide: list[str] | None = None
    precompressed: GoMap | None = None
    while h.next():
        args = h.remaining_args()
        if len(args) == 1:
            if args[0] != "browse":
                raise h.arg_err()
            server["browse"] = {}
        elif len(args) > 1:
            raise h.arg_err()

        while h.next_block(0):
            option = h.val()
            if option == "fs":
                if not h.next_arg():
                    raise h.arg_err()
                if "file_system" in server:
                    raise h.err("file system module already specified")
                # No caddy.fs.* module ships with Caddy 2.6.2: this reports Caddy's error.
                server["file_system"] = unmarshal_module(h.dispenser, "caddy.fs", h.val(), {})
            elif option in ("hide", "index"):
                values = h.remaining_args()
                if not values:
                    raise h.arg_err()
                if option == "hide":
                    hide = values
                else:
                    server["index_names"] = values
            elif option == "root":
                root = h.args(1)
                if root is None:
                    raise h.arg_err()
                server["root"] = root[0]
            elif option == "browse":
                if "browse" in server:
                    raise h.err("browsing is already configured")
                browse: JSONObject = {}
                template = h.args(1)
                if template is not None and template[0]:
                    browse["template_file"] = template[0]
                server["browse"] = browse
            elif option == "precompressed":
                order: list[str] = []
                while h.next_arg():
                    name = h.val()
                    if name not in PRECOMPRESSORS:
                        raise h.err(
                            f"getting module named 'http.precompressed.{name}': "
                            f"module not registered: http.precompressed.{name}"
                        )
                    if precompressed is None:
                        precompressed = GoMap()
                    precompressed[name] = {}
                    order.append(name)
                server["precompressed_order"] = order
            elif option == "status":
                if not h.next_arg():
                    raise h.arg_err()
                server["status_code"] = h.val()
            elif option == "disable_canonical_uris":
                if h.next_arg():
                    raise h.arg_err()
                server["canonical_uris"] = False
            elif option == "pass_thru":
                if h.next_arg():
                    raise h.arg_err()
                server["pass_thru"] = True
            else:
                raise h.err(f"unknown subdirective '{option}'")

    for caddyfile in h.caddyfiles():
        caddyfile = clean(caddyfile)
        if not file_hidden(caddyfile, hide or []):
            hide = (hide or []) + [hide_path(caddyfile)]

    out: JSONObject = {}
    if server.get("file_system"):
        out["file_system"] = server["file_system"]
    if server.get("root"):
        out["root"] = server["root"]
    if hide:
        out["hide"] = hide
    if server.get("index_names"):
        out["index_names"] = server["index_names"]
    if "browse" in server:
        out["browse"] = server["browse"]
    if "canonical_uris" in server:
        out["canonical_uris"] = False
    if server.get("status_code"):
        out["status_code"] = weak_string(server["status_code"])
    if server.get("pass_thru"):
        out["pass_thru"] = True
    if precompressed:
        out["precompressed"] = precompressed
    if server.get("precompressed_order"):
        out["precompressed_order"] = server["precompressed_order"]
    return module_object(out, "handler", "file_server")


# -- try_files -------------------------------------------------------------------------------


@directive("try_files")
def parse_try_files(h: Helper) -> list[ConfigValue]:
    """``try_files <files...> { policy <policy> }``: rewrite to the first file that exists.

    There is no matcher argument; every argument is a file to try. An entry
    with a query (``/index.php?{query}``) gets a route of its own, so that
    the query is appended to the rewritten URI.
    """
    if not h.next():
        raise h.arg_err()
    try_files = h.remaining_args()
    if not try_files:
        raise h.arg_err()

    try_policy = ""
    nesting = h.nesting
    while h.next_block(nesting):
        if h.val() == "policy":
            if try_policy:
                raise h.err("try policy already configured")
            if not h.next_arg():
                raise h.arg_err()
            try_policy = h.val()
            if try_policy not in TRY_POLICIES:
                raise h.err(f"unrecognized try policy: {try_policy}")

    def make_route(files: list[str], query: str) -> list[ConfigValue]:
        handler = rewrite_handler(uri="{http.matchers.file.relative}" + query)
        matcher_set = GoMap(file=file_matcher_json(try_files=files, try_policy=try_policy))
        return h.new_route(matcher_set, handler)

    result: list[ConfigValue] = []
    pending: list[str] = []
    for item in try_files:
        index = item.find("?")
        if index >= 0:
            if pending:
                result.extend(make_route(pending, ""))
                pending = []
            result.extend(make_route([item[:index]], item[index:]))
            continue
        pending.append(item)
    if pending:
        result.extend(make_route(pending, ""))

    h.group_routes(result)
    return result
