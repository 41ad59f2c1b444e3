"""Caddyfile syntax of the HTTP request matchers, and of response matchers.

Each ``http.matchers.<name>`` module of Caddy 2.6.2 registers a parser that
turns the matcher's tokens into the JSON Caddy prints for it
(``caddyconfig.JSON`` of the matcher value: struct fields in declaration
order, Go maps as :class:`GoMap`). The parser gets a Dispenser over all the
tokens of that matcher type in a matcher set (several lines of the same type
are concatenated), positioned before the first matcher-name token, so every
parser loops with ``while d.next()`` like Caddy's ``UnmarshalCaddyfile``.

Also here: ``parse_nested_matcher_set`` (the inside of ``not``) and
``parse_named_response_matcher`` (``match`` blocks of ``encode`` and the
response matchers of ``reverse_proxy``).
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.strconv import atoi
from txcaddy._go.textproto import canonical_mime_header_key as canonical_header_key
from txcaddy.caddyfile import registry
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.caddyfile.registry import matcher

__all__ = [
    "PRIVATE_RANGES",
    "parse_header_matcher",
    "parse_named_response_matcher",
    "parse_nested_matcher_set",
]

JSONObject = dict[str, Any]

# What ``remote_ip private_ranges`` expands to (Caddy 2.6.2's list).
PRIVATE_RANGES = (
    "192.168.0.0/16",
    "172.16.0.0/12",
    "10.0.0.0/8",
    "127.0.0.1/8",
    "fd00::/8",
    "::1",
)

# -- Go behaviour the matchers depend on ----------------------------------------

def _regexp(pattern: str, name: str = "") -> JSONObject:
    """caddyhttp.MatchRegexp's JSON."""
    out: JSONObject = {}
    if name:
        out["name"] = name
    out["pattern"] = pattern
    return out


# -- string-list matchers ---------------------------------------------------------


def _string_list(kind: str) -> registry.MatcherFunc:
    """host, path and method: every argument, on any number of lines; no blocks."""

    def parse(d: Dispenser) -> list[str] | None:
        values: list[str] | None = None  # Go's nil slice prints as null
        while d.next():
            args = d.remaining_args()
            if args:
                values = (values or []) + args
            if d.next_block(0):
                raise d.err(f"malformed {kind} matcher: blocks are not supported")
        return values

    parse.__name__ = f"parse_{kind}_matcher"
    parse.__doc__ = f"MatchHost/MatchPath/MatchMethod syntax for ``{kind}``."
    return parse


for _kind in ("host", "path", "method"):
    registry.register_matcher(_kind, _string_list(_kind))


@matcher("path_regexp")
def parse_path_regexp_matcher(d: Dispenser) -> JSONObject:
    """``path_regexp [<name>] <regexp>``, once per matcher set."""
    pattern = name = ""
    while d.next():
        if pattern:
            raise d.err("regular expression can only be used once per named matcher")
        args = d.remaining_args()
        if len(args) == 1:
            pattern = args[0]
        elif len(args) == 2:
            name, pattern = args
        else:
            raise d.arg_err()
        if d.next_block(0):
            raise d.err("malformed path_regexp matcher: blocks are not supported")
    return _regexp(pattern, name)


# -- query, header, header_regexp ----------------------------------------------------


@matcher("query")
def parse_query_matcher(d: Dispenser) -> GoMap:
    """``query key=value ...``; values of the same key accumulate."""
    values = GoMap()
    while d.next():
        for query in d.remaining_args():
            if query == "":
                continue
            key, found, value = query.partition("=")
            if not found:
                # Caddy names the line's last token here, not the malformed one.
                raise d.err(
                    f"malformed query matcher token: {d.val()}; must be in param=val format"
                )
            values.setdefault(key, []).append(value)
        if d.next_block(0):
            raise d.err("malformed query matcher: blocks are not supported")
    return values


def parse_header_matcher(d: Dispenser, headers: GoMap | None = None) -> GoMap:
    """MatchHeader's syntax (``<field> <value>`` or ``!<field>``), adding to ``headers``.

    Field names are canonicalized as ``http.Header.Add`` does, except in the
    ``!field`` form, which Caddy stores as written.
    """
    if headers is None:
        headers = GoMap()
    while d.next():
        args = d.args(1)
        if args is None:
            raise d.err("malformed header matcher: expected field")
        field = args[0]
        if field.startswith("!"):
            if len(field) == 1:
                raise d.err("malformed header matcher: must have field name following ! character")
            headers[field[1:]] = None
            if d.next_arg():
                raise d.err(
                    "malformed header matcher: null matching headers cannot have a field value"
                )
        else:
            if not d.next_arg():
                raise d.err("malformed header matcher: expected both field and value")
            key = canonical_header_key(field)
            headers[key] = (headers.get(key) or []) + [d.val()]
        if d.next_block(0):
            raise d.err("malformed header matcher: blocks are not supported")
    return headers


registry.register_matcher("header", parse_header_matcher)


def _field_regexps(d: Dispenser, kind: str, unique: bool) -> GoMap:
    """header_regexp and vars_regexp: ``[<name>] <field> <regexp>`` per line."""
    regexps = GoMap()
    while d.next():
        args = d.args(2)
        if args is None:
            raise d.arg_err()
        third = d.args(1)
        if third is not None:
            name, field, pattern = args[0], args[1], third[0]
        else:
            name, (field, pattern) = "", args
        if unique and regexps.get(field) is not None:
            raise d.err(
                "header_regexp matcher can only be used once per named matcher, "
                f"per header field: {field}"
            )
        regexps[field] = _regexp(pattern, name)
        if d.next_block(0):
            raise d.err(f"malformed {kind} matcher: blocks are not supported")
    return regexps


@matcher("header_regexp")
def parse_header_regexp_matcher(d: Dispenser) -> GoMap:
    return _field_regexps(d, "header_regexp", unique=True)


# -- protocol, remote_ip -----------------------------------------------------------


@matcher("protocol")
def parse_protocol_matcher(d: Dispenser) -> str:
    protocol = ""
    while d.next():
        args = d.args(1)
        if args is None:
            raise d.err("expected exactly one protocol")
        protocol = args[0]
    return protocol


@matcher("remote_ip")
def parse_remote_ip_matcher(d: Dispenser) -> JSONObject:
    """``remote_ip [forwarded] <ranges...>``; ``private_ranges`` is a shortcut."""
    ranges: list[str] = []
    forwarded = False
    while d.next():
        while d.next_arg():
            if d.val() == "forwarded":
                if ranges:
                    raise d.err("if used, 'forwarded' must be first argument")
                forwarded = True
                continue
            if d.val() == "private_ranges":
                ranges.extend(PRIVATE_RANGES)
                continue
            ranges.append(d.val())
        if d.next_block(0):
            raise d.err("malformed remote_ip matcher: blocks are not supported")
    out: JSONObject = {}
    if ranges:
        out["ranges"] = ranges
    if forwarded:
        out["forwarded"] = True
    return out


# -- not, expression ------------------------------------------------------------------


def parse_nested_matcher_set(d: Dispenser) -> GoMap:
    """caddyhttp.ParseCaddyfileNestedMatcherSet: matchers on the rest of the line or in a block.

    Tokens of the same matcher type are concatenated and handed to that
    matcher's registered parser, as for named matchers.
    """
    tokens_by_name: dict[str, list] = {}
    nesting = d.nesting
    while d.next_arg() or d.next_block(nesting):
        name = d.val()
        tokens_by_name.setdefault(name, []).extend(d.next_segment())
    matcher_set = GoMap()
    for name, tokens in tokens_by_name.items():
        parse = registry.MATCHERS.get(name)
        if parse is None:
            raise d.err(
                f"getting matcher module '{name}': module not registered: http.matchers.{name}"
            )
        matcher_set[name] = parse(Dispenser(tokens))
    return matcher_set


@matcher("not")
def parse_not_matcher(d: Dispenser) -> list[GoMap]:
    """``not <matcher...>`` or ``not { ... }``: each occurrence is one negated set."""
    matcher_sets: list[GoMap] = []
    while d.next():
        matcher_sets.append(parse_nested_matcher_set(d))
    return matcher_sets


@matcher("expression")
def parse_expression_matcher(d: Dispenser) -> str:
    """A CEL expression: several arguments are joined with their quotes kept.

    Caddy walks every token and keeps the last result, so a single quoted
    argument (``expression "a == b"``) yields that argument's text.
    """
    expression = ""
    while d.next():
        if d.count_remaining_args() > 1:
            expression = " ".join(d.remaining_args_raw())
        else:
            expression = d.val()
    return expression


# -- vars, vars_regexp ----------------------------------------------------------------


@matcher("vars")
def parse_vars_matcher(d: Dispenser) -> GoMap:
    """``vars <variable or {placeholder}> <values...>``."""
    variables = GoMap()
    while d.next():
        args = d.args(1)
        if args is None:
            raise d.err("malformed vars matcher: expected field name")
        values = d.remaining_args()
        if not values:
            raise d.err("malformed vars matcher: expected at least one value to match against")
        variables[args[0]] = (variables.get(args[0]) or []) + values
        if d.next_block(0):
            raise d.err("malformed vars matcher: blocks are not supported")
    return variables


@matcher("vars_regexp")
def parse_vars_regexp_matcher(d: Dispenser) -> GoMap:
    return _field_regexps(d, "vars_regexp", unique=False)


# -- file ------------------------------------------------------------------------------------


@matcher("file")
def parse_file_matcher(d: Dispenser) -> JSONObject:
    """fileserver.MatchFile: ``file [<files...>] { root, try_files, try_policy, split_path }``."""
    root = try_policy = ""
    try_files: list[str] = []
    split_path: list[str] = []
    while d.next():
        try_files.extend(d.remaining_args())
        while d.next_block(0):
            option = d.val()
            if option == "root":
                if not d.next_arg():
                    raise d.arg_err()
                root = d.val()
            elif option == "try_files":
                try_files.extend(d.remaining_args())
                if not try_files:
                    raise d.arg_err()
            elif option == "try_policy":
                if not d.next_arg():
                    raise d.arg_err()
                try_policy = d.val()
            elif option == "split_path":
                split_path = d.remaining_args()
                if not split_path:
                    raise d.arg_err()
            else:
                raise d.err(f"unrecognized subdirective: {option}")
    return file_matcher_json(root=root, try_files=try_files, try_policy=try_policy,
                             split_path=split_path)


def file_matcher_json(
    *, root: str = "", try_files: list[str] | None = None, try_policy: str = "",
    split_path: list[str] | None = None,
) -> JSONObject:
    """MatchFile's JSON, fields in Go's order, empty ones left out."""
    out: JSONObject = {}
    if root:
        out["root"] = root
    if try_files:
        out["try_files"] = list(try_files)
    if try_policy:
        out["try_policy"] = try_policy
    if split_path:
        out["split_path"] = list(split_path)
    return out


# -- response matchers ---------------------------------------------------------------------


def _status_code(arg: str, d: Dispenser) -> int:
    """A status code, or a class written ``4xx`` (which becomes ``4``)."""
    if len(arg) == 3 and arg.endswith("xx"):
        arg = arg[:1]
    try:
        return atoi(arg)
    except ValueError as e:
        raise d.err(f"bad status value '{arg}': {e}") from None


def parse_named_response_matcher(d: Dispenser, matchers: dict[str, JSONObject]) -> None:
    """caddyhttp.ParseNamedResponseMatcher: ``<name> { status ...; header ... }``.

    The first token of each segment is the matcher's name (``@name`` in
    ``reverse_proxy``, ``match`` in ``encode``); the parsed
    ``ResponseMatcher`` JSON is stored in ``matchers`` under that name.
    """
    while d.next():
        name = d.val()
        if name in matchers:
            raise d.err(f"matcher is defined more than once: {name}")
        status_codes: list[int] | None = None
        headers: GoMap | None = None
        nesting = d.nesting
        while d.next_arg() or d.next_block(nesting):
            kind = d.val()
            if kind == "header":
                headers = parse_header_matcher(d.new_from_next_segment(), headers)
            elif kind == "status":
                if status_codes is None:
                    status_codes = []
                args = d.remaining_args()
                if not args:
                    raise d.arg_err()
                status_codes.extend(_status_code(arg, d) for arg in args)
            else:
                raise d.err(f"unrecognized response matcher {kind}")
        response_matcher: JSONObject = {}
        if status_codes:
            response_matcher["status_code"] = status_codes
        if headers:
            response_matcher["headers"] = headers
        matchers[name] = response_matcher
