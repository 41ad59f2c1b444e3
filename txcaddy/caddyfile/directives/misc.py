"""Smaller handler directives, each a port of its Caddy 2.6.2 module's Caddyfile code.

``encode`` (encode/caddyfile.go with the gzip and zstd encoders),
``request_body``, ``map``, ``push``, ``templates``, ``basicauth``,
``metrics`` (modules/metrics), ``acme_server`` (caddypki/acmeserver) and
``tracing`` (caddyhttp/tracing; Caddy builds without OpenTelemetry lack it,
but the directive is part of Caddy 2.6.2 and adapts the same everywhere).
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.strconv import atoi, quote
from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile._shorthands import was_replaced_placeholder_shorthand
from txcaddy.caddyfile.directives._unmarshal import plain_error
from txcaddy.caddyfile.directives.headers import header_op
from txcaddy.caddyfile.directives.matchers import parse_named_response_matcher
from txcaddy.caddyfile.directives.options import CertificateAuthority
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive, handler_directive


def _atoi_or_bare_error(text: str) -> int:
    """strconv.Atoi whose error Caddy returns as is (without file and line)."""
    try:
        return atoi(text)
    except ValueError as e:
        raise plain_error(str(e)) from None


# -- encode -------------------------------------------------------------------------


def _parse_gzip(d: Dispenser) -> JSONObject:
    """gzip.Gzip: an optional compression level."""
    level = 0
    while d.next():
        if not d.next_arg():
            continue
        level = _atoi_or_bare_error(d.val())
    return {"level": level} if level else {}


def _parse_zstd(d: Dispenser) -> JSONObject:
    """zstd.Zstd has no options (and ignores whatever follows it)."""
    return {}


# The http.encoders.* modules of Caddy 2.6.2 as packaged (no brotli encoder).
ENCODERS = {"gzip": _parse_gzip, "zstd": _parse_zstd}


@handler_directive("encode")
def parse_encode(h: Helper) -> JSONObject:
    """``encode [<matcher>] <formats...> { <format> [<options>]; minimum_length; match {...} }``."""
    d = h.dispenser
    encodings: GoMap | None = None
    prefer: list[str] = []
    minimum_length = 0
    response_matchers: dict[str, JSONObject] = {}
    match: JSONObject | None = None
    while d.next():
        for name in d.remaining_args():
            if name not in ENCODERS:
                raise d.err(
                    f"finding encoder module '': module not registered: http.encoders.{name}"
                )
            if encodings is None:
                encodings = GoMap()
            encodings[name] = {}
            prefer.append(name)
        while d.next_block(0):
            option = d.val()
            if option == "minimum_length":
                if not d.next_arg():
                    raise d.arg_err()
                minimum_length = _atoi_or_bare_error(d.val())
            elif option == "match":
                parse_named_response_matcher(d.new_from_next_segment(), response_matchers)
                match = response_matchers["match"]
            else:
                parse = ENCODERS.get(option)
                if parse is None:
                    raise d.err(
                        f"getting module named 'http.encoders.{option}': "
                        f"module not registered: http.encoders.{option}"
                    )
                if encodings is None:
                    encodings = GoMap()
                encodings[option] = parse(d.new_from_next_segment())
                prefer.append(option)
    out: JSONObject = {}
    if encodings:
        out["encodings"] = encodings
    if prefer:
        out["prefer"] = prefer
    if minimum_length:
        out["minimum_length"] = minimum_length
    if match is not None:
        out["match"] = match
    return module_object(out, "handler", "encode")


# -- request_body ----------------------------------------------------------------------


@handler_directive("request_body")
def parse_request_body(h: Helper) -> JSONObject:
    """``request_body [<matcher>] { max_size <size> }``."""
    max_size = 0
    while h.next():
        while h.next_block(0):
            if h.val() != "max_size":
                raise h.err(f"unrecognized servers option '{h.val()}'")
            args = h.all_args(1)
            if args is None:
                raise h.arg_err()
            try:
                size = parse_bytes(args[0])
            except ValueError as e:
                raise h.err(f"parsing max_size: {e}") from None
            # Go converts the uint64 to int64, wrapping very large sizes.
            max_size = size - 2**64 if size >= 2**63 else size
    out: JSONObject = {"max_size": max_size} if max_size else {}
    return module_object(out, "handler", "request_body")


# -- map --------------------------------------------------------------------------------------


@handler_directive("map")
def parse_map(h: Helper) -> JSONObject:
    """``map [<matcher>] <source> <destinations...> { [~]<input> <outputs...>; default ... }``.

    Outputs keep their scalar type (``true``, ``3``, ``1.5``); ``-`` is null.
    """
    source = ""
    destinations: list[str] = []
    mappings: list[JSONObject] = []
    defaults: list[str] = []
    while h.next():
        if not h.next_arg():
            raise h.arg_err()
        source = h.val()
        destinations = h.remaining_args()
        if not destinations:
            raise h.err("missing destination argument(s)")
        for destination in destinations:
            shorthand = was_replaced_placeholder_shorthand(destination)
            if shorthand:
                raise h.err(
                    f"destination {shorthand} conflicts with a Caddyfile placeholder shorthand"
                )
        while h.next_block(0):
            if h.val() == "default":
                if defaults:
                    raise h.err("defaults already defined")
                defaults = h.remaining_args()
                defaults += [""] * (len(destinations) - len(defaults))
                continue
            source_value = h.val()
            outputs: list[Any] = []
            while h.next_arg():
                value = h.scalar_val()
                outputs.append(None if value == "-" else value)
            if len(outputs) > len(destinations):
                raise h.err("too many outputs")
            outputs += [None] * (len(destinations) - len(outputs))
            mapping: JSONObject = {}
            if source_value.startswith("~"):
                if source_value[1:]:
                    mapping["input_regexp"] = source_value[1:]
            elif source_value:
                mapping["input"] = source_value
            if outputs:
                mapping["outputs"] = outputs
            mappings.append(mapping)
    out: JSONObject = {}
    if source:
        out["source"] = source
    if destinations:
        out["destinations"] = destinations
    if mappings:
        out["mappings"] = mappings
    if defaults:
        out["defaults"] = defaults
    return module_object(out, "handler", "map")


# -- push ----------------------------------------------------------------------------------------


@handler_directive("push")
def parse_push(h: Helper) -> JSONObject:
    """``push [<matcher>] [<resource>] { [GET|HEAD] <resource>; headers { ... } }``."""
    resources: list[JSONObject] = []
    headers: JSONObject | None = None

    def resource(method: str, target: str) -> JSONObject:
        out: JSONObject = {}
        if method:
            out["method"] = method
        if target:
            out["target"] = target
        return out

    while h.next():
        if h.next_arg():
            resources.append(resource("", h.val()))
        outer = h.nesting
        while h.next_block(outer):
            option = h.val()
            if option == "headers":
                if h.next_arg():
                    raise h.arg_err()
                inner = h.nesting
                while h.next_block(inner):
                    args = [h.val()] + h.remaining_args()
                    if headers is None:
                        headers = {}
                    if len(args) > 3:
                        raise h.arg_err()
                    args += [""] * (3 - len(args))
                    header_op(h, headers, args[0], args[1], args[2], response=False)
            elif option in ("GET", "HEAD"):
                if not h.next_arg():
                    raise h.arg_err()
                resources.append(resource(option, h.val()))
            else:
                resources.append(resource("", option))
    out: JSONObject = {}
    if resources:
        out["resources"] = resources
    if headers is not None:
        out["headers"] = headers
    return module_object(out, "handler", "push")


# -- templates ---------------------------------------------------------------------------------------


@handler_directive("templates")
def parse_templates(h: Helper) -> JSONObject:
    """``templates [<matcher>] { mime <types...>; between <open> <close>; root <path> }``.

    Unknown options are ignored, as in Caddy.
    """
    file_root = ""
    mime_types: list[str] = []
    delimiters: list[str] = []
    while h.next():
        while h.next_block(0):
            option = h.val()
            if option == "mime":
                mime_types = h.remaining_args()
                if not mime_types:
                    raise h.arg_err()
            elif option == "between":
                delimiters = h.remaining_args()
                if len(delimiters) != 2:
                    raise h.arg_err()
            elif option == "root":
                root = h.args(1)
                if root is None:
                    raise h.arg_err()
                file_root = root[0]
    out: JSONObject = {}
    if file_root:
        out["file_root"] = file_root
    if mime_types:
        out["mime_types"] = mime_types
    if delimiters:
        out["delimiters"] = delimiters
    return module_object(out, "handler", "templates")


# -- basicauth ------------------------------------------------------------------------------------------


@handler_directive("basicauth")
def parse_basicauth(h: Helper) -> JSONObject:
    """``basicauth [<matcher>] [<hash_algorithm> [<realm>]] { <username> <hashed_password> [<salt>] }``."""
    hash_json: JSONObject | None = None
    accounts: list[JSONObject] = []
    realm = ""
    while h.next():
        args = h.remaining_args()
        if len(args) == 0:
            hash_name = "bcrypt"
        elif len(args) == 1:
            hash_name = args[0]
        elif len(args) == 2:
            hash_name, realm = args
        else:
            raise h.arg_err()
        if hash_name not in ("bcrypt", "scrypt"):
            raise h.err(f"unrecognized hash algorithm: {hash_name}")
        hash_json = {"algorithm": hash_name}

        while h.next_block(0):
            username = h.val()
            password = salt = ""
            if h.next_arg():
                password = h.val()
                if h.next_arg():
                    salt = h.val()
            if h.next_arg():
                raise h.arg_err()
            if username == "" or password == "":
                raise h.err("username and password cannot be empty or missing")
            account: JSONObject = {"username": username, "password": password}
            if salt:
                account["salt"] = salt
            accounts.append(account)

    basic: JSONObject = {}
    if hash_json is not None:
        basic["hash"] = hash_json
    if accounts:
        basic["accounts"] = accounts
    if realm:
        basic["realm"] = realm
    basic["hash_cache"] = {}
    return module_object({"providers": GoMap(http_basic=basic)}, "handler", "authentication")


# -- metrics -------------------------------------------------------------------------------------------------


@handler_directive("metrics")
def parse_metrics(h: Helper) -> JSONObject:
    """``metrics [<matcher>] { disable_openmetrics }``."""
    disable_openmetrics = False
    while h.next():
        if h.remaining_args():
            raise h.arg_err()
        while h.next_block(0):
            if h.val() != "disable_openmetrics":
                raise h.err(f"unrecognized subdirective {quote(h.val())}")
            disable_openmetrics = True
    out: JSONObject = {"disable_openmetrics": True} if disable_openmetrics else {}
    return module_object(out, "handler", "metrics")


# -- acme_server ----------------------------------------------------------------------------------------------


@directive("acme_server")
def parse_acme_server(h: Helper) -> list[ConfigValue]:
    """``acme_server [<matcher>] { ca <id> }``; the CA is also added to the pki app."""
    if not h.next():
        raise h.arg_err()
    matcher_set = h.extract_matcher_set()
    ca_id = ""
    ca: CertificateAuthority | None = None
    while h.next():
        if h.next_arg():
            raise h.arg_err()
        while h.next_block(0):
            if h.val() == "ca":
                args = h.all_args(1)
                if args is None:
                    raise h.arg_err()
                ca_id = args[0]
                if ca is None:
                    ca = CertificateAuthority()
                ca.id = ca_id
    handler = module_object({"ca": ca_id} if ca_id else {}, "handler", "acme_server")
    values = h.new_route(matcher_set, handler)
    if ca is not None:
        values.append(ConfigValue("pki.ca", ca))
    return values


# -- tracing ----------------------------------------------------------------------------------------------------


@handler_directive("tracing")
def parse_tracing(h: Helper) -> JSONObject:
    """``tracing [<matcher>] { span <span_name> }``."""
    span = ""
    while h.next():
        if h.remaining_args():
            raise h.arg_err()
        while h.next_block(0):
            if h.val() != "span":
                raise h.arg_err()
            if not h.next_arg():
                raise h.arg_err()
            span = h.val()
            if h.next_arg():
                raise h.arg_err()
    return module_object({"span": span}, "handler", "tracing")
