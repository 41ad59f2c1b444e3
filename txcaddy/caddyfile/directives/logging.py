"""The ``log`` directive, the ``log`` global option and the top-level ``logging`` JSON.

Both forms share Caddy's parseLogHelper (httpcaddyfile/builtins.go): a
writer (``output``), an encoder (``format``), a level and, for the global
option only, ``include``/``exclude``. The writer and encoder sub-blocks are
ports of the modules in Caddy's ``modules/logging`` package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.strconv import NumError, atoi
from txcaddy._go.time import duration_string
from txcaddy.caddyfile._humanize import MIB, parse_bytes
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive
from txcaddy.config.values import parse_caddy_duration

DEFAULT_LOGGER_NAME = "default"
ACCESS_LOGGER_PREFIX = "http.log.access."


@dataclass
class CustomLog:
    """caddy.CustomLog, with the writer and encoder already as module JSON."""

    writer: GoMap | None = None
    encoder: GoMap | None = None
    level: str = ""
    include: list[str] | None = None
    exclude: list[str] | None = None

    def is_empty(self) -> bool:
        return self == CustomLog()

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.writer is not None:
            out["writer"] = self.writer
        if self.encoder is not None:
            out["encoder"] = self.encoder
        if self.level:
            out["level"] = self.level
        if self.include:
            out["include"] = self.include
        if self.exclude:
            out["exclude"] = self.exclude
        return out


@dataclass
class NamedCustomLog:
    """A logger and the name it gets under ``logging.logs`` ("" means none)."""

    name: str = ""
    log: CustomLog = field(default_factory=CustomLog)


# -- writers (caddy.logging.writers.*) ------------------------------------


def _parse_file_writer(d: Dispenser) -> JSONObject:
    filename = ""
    roll: bool | None = None
    roll_size_mb = 0
    roll_gzip: bool | None = None
    roll_local_time = False
    roll_keep = 0
    roll_keep_days = 0
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        filename = d.val()
        if d.next_arg():
            raise d.arg_err()
        while d.next_block(0):
            option = d.val()
            if option == "roll_disabled":
                roll = False
                if d.next_arg():
                    raise d.arg_err()
            elif option == "roll_size":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                try:
                    size = parse_bytes(args[0])
                except ValueError as e:
                    raise d.err(f"parsing size: {e}")
                roll_size_mb = math.ceil(size / MIB)
            elif option == "roll_uncompressed":
                roll_gzip = False
                if d.next_arg():
                    raise d.arg_err()
            elif option == "roll_local_time":
                roll_local_time = True
                if d.next_arg():
                    raise d.arg_err()
            elif option == "roll_keep":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                try:
                    roll_keep = atoi(args[0])
                except NumError as e:
                    raise d.err(f"parsing roll_keep number: {e}") from None
            elif option == "roll_keep_for":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                try:
                    keep_for = parse_caddy_duration(args[0])
                except ValueError as e:
                    raise d.err(f"parsing roll_keep_for duration: {e}")
                if keep_for < 0:
                    raise d.err(f"negative roll_keep_for duration: {duration_string(keep_for)}")
                roll_keep_days = math.ceil(keep_for / 3_600_000_000_000 / 24)
    out: JSONObject = {}
    if filename:
        out["filename"] = filename
    if roll is not None:
        out["roll"] = roll
    if roll_size_mb:
        out["roll_size_mb"] = roll_size_mb
    if roll_gzip is not None:
        out["roll_gzip"] = roll_gzip
    if roll_local_time:
        out["roll_local_time"] = True
    if roll_keep:
        out["roll_keep"] = roll_keep
    if roll_keep_days:
        out["roll_keep_days"] = roll_keep_days
    return out


def _parse_net_writer(d: Dispenser) -> JSONObject:
    address = ""
    dial_timeout = 0
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        address = d.val()
        if d.next_arg():
            raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            if d.val() == "dial_timeout":
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    timeout = parse_caddy_duration(d.val())
                except ValueError:
                    raise d.err(f"invalid duration: {d.val()}")
                if d.next_arg():
                    raise d.arg_err()
                dial_timeout = timeout
    out: JSONObject = {}
    if address:
        out["address"] = address
    if dial_timeout:
        out["dial_timeout"] = dial_timeout
    return out


WRITER_MODULES = {"file": _parse_file_writer, "net": _parse_net_writer}
_STANDARD_WRITERS = ("stdout", "stderr", "discard")


# -- encoders (caddy.logging.encoders.*) ----------------------------------

_ENCODER_KEYS = (
    "message_key",
    "level_key",
    "time_key",
    "name_key",
    "caller_key",
    "stacktrace_key",
    "line_ending",
)
_ENCODER_FIELDS = _ENCODER_KEYS + ("time_format", "time_local", "duration_format", "level_format")


def _parse_encoder_config(d: Dispenser, config: dict[str, Any]) -> None:
    """LogEncoderConfig.UnmarshalCaddyfile (shared by json and console)."""
    nesting = d.nesting
    while d.next_block(nesting):
        subdir = d.val()
        if subdir == "time_local":
            config["time_local"] = True
            if d.next_arg():
                raise d.arg_err()
            continue
        args = d.all_args(1)
        if args is None:
            raise d.arg_err()
        if subdir in _ENCODER_KEYS or subdir in ("time_format", "duration_format", "level_format"):
            config[subdir] = args[0]
        else:
            raise d.err(f"unrecognized subdirective {subdir}")


def _encoder_config_json(config: dict[str, Any]) -> JSONObject:
    out: JSONObject = {}
    for name in _ENCODER_FIELDS:
        if name not in config:
            continue
        value = config[name]
        # the *_key fields are pointers: present even when empty
        if name in _ENCODER_KEYS or value:
            out[name] = value
    return out


def _parse_plain_encoder(d: Dispenser) -> JSONObject:
    config: dict[str, Any] = {}
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        _parse_encoder_config(d, config)
    return _encoder_config_json(config)


def _parse_filter_encoder(d: Dispenser) -> JSONObject:
    wrapped: GoMap | None = None
    fields: GoMap | None = None
    while d.next():
        while d.next_block(0):
            option = d.val()
            if option == "wrap":
                if not d.next_arg():
                    raise d.arg_err()
                name = d.val()
                encoder = unmarshal_module(d, "caddy.logging.encoders", name, ENCODER_MODULES)
                wrapped = module_object(encoder, "format", name)
            elif option == "fields":
                while d.next_block(1):
                    field_name = d.val()
                    if not d.next_arg():
                        raise d.arg_err()
                    filter_name = d.val()
                    log_filter = unmarshal_module(
                        d, "caddy.logging.encoders.filter", filter_name, FILTER_MODULES
                    )
                    if fields is None:
                        fields = GoMap()
                    fields[field_name] = module_object(log_filter, "filter", filter_name)
            else:
                raise d.err(f"unrecognized subdirective {option}")
    out: JSONObject = {}
    if wrapped is not None:
        out["wrap"] = wrapped
    if fields:
        out["fields"] = fields
    return out


ENCODER_MODULES = {
    "console": _parse_plain_encoder,
    "json": _parse_plain_encoder,
    "filter": _parse_filter_encoder,
}


# -- field filters (caddy.logging.encoders.filter.*) ----------------------


def _parse_no_options(d: Dispenser) -> JSONObject:
    return {}


def _parse_one_value(key: str):  # type: ignore[no-untyped-def]
    """Filters whose only setting is their first argument (replace, rename)."""

    def parse(d: Dispenser) -> JSONObject:
        value = ""
        while d.next():
            if d.next_arg():
                value = d.val()
        return {key: value} if value else {}

    return parse


def _parse_regexp_filter(d: Dispenser) -> JSONObject:
    pattern = value = ""
    while d.next():
        if d.next_arg():
            pattern = d.val()
        if d.next_arg():
            value = d.val()
    out: JSONObject = {}
    if pattern:
        out["regexp"] = pattern
    if value:
        out["value"] = value
    return out


def _parse_ip_mask_filter(d: Dispenser) -> JSONObject:
    masks = {"ipv4": 0, "ipv6": 0}
    while d.next():
        while d.next_block(0):
            option = d.val()
            if option not in masks:
                raise d.err(f"unrecognized subdirective {option}")
            if not d.next_arg():
                raise d.arg_err()
            try:
                masks[option] = atoi(d.val())
            except NumError as e:
                raise d.err(f"error parsing {d.val()}: {e}") from None
    out: JSONObject = {}
    if masks["ipv4"]:
        out["ipv4_cidr"] = masks["ipv4"]
    if masks["ipv6"]:
        out["ipv6_cidr"] = masks["ipv6"]
    return out


def _parse_actions(target_key: str):  # type: ignore[no-untyped-def]
    """The query and cookie filters: a list of replace/hash/delete actions."""

    def parse(d: Dispenser) -> JSONObject:
        actions: list[JSONObject] | None = None
        while d.next():
            while d.next_block(0):
                kind = d.val()
                if kind not in ("replace", "hash", "delete"):
                    raise d.err(f"unrecognized subdirective {kind}")
                if not d.next_arg():
                    raise d.arg_err()
                action: JSONObject = {"type": kind, target_key: d.val()}
                if kind == "replace":
                    if not d.next_arg():
                        raise d.arg_err()
                    if d.val():
                        action["value"] = d.val()
                actions = (actions or []) + [action]
        return {"actions": actions}

    return parse


FILTER_MODULES = {
    "delete": _parse_no_options,
    "hash": _parse_no_options,
    "replace": _parse_one_value("value"),
    "rename": _parse_one_value("name"),
    "regexp": _parse_regexp_filter,
    "ip_mask": _parse_ip_mask_filter,
    "query": _parse_actions("parameter"),
    "cookie": _parse_actions("name"),
}


# -- the log block ----------------------------------------------------------


def parse_log_block(
    h: Dispenser | Helper,
    state: dict[str, Any],
    global_log_names: set[str] | None = None,
) -> list[ConfigValue]:
    """parseLogHelper: the site ``log`` directive, or the global ``log`` option.

    With ``global_log_names`` (the names already configured) the block is the
    global option: it may be named and may use include/exclude. Otherwise the
    logger is named ``log<N>`` from ``state["logCounter"]`` and includes only
    its own access logs.
    """
    as_global_option = global_log_names is not None
    values: list[ConfigValue] = []
    while h.next():
        global_log_name = ""
        if global_log_names is not None:
            if h.next_arg():
                global_log_name = h.val()
                if h.next_arg():
                    raise h.arg_err()
            else:
                global_log_name = DEFAULT_LOGGER_NAME
            if global_log_name in global_log_names:
                raise h.err("duplicate global log option for: " + global_log_name)
            global_log_names.add(global_log_name)
        elif h.next_arg():
            raise h.arg_err()

        log = CustomLog()
        while h.next_block(0):
            option = h.val()
            if option == "output":
                if not h.next_arg():
                    raise h.arg_err()
                name = h.val()
                if name in _STANDARD_WRITERS:
                    writer: Any = {}
                else:
                    writer = unmarshal_module(h, "caddy.logging.writers", name, WRITER_MODULES)
                log.writer = module_object(writer, "output", name)
            elif option == "format":
                if not h.next_arg():
                    raise h.arg_err()
                name = h.val()
                encoder = unmarshal_module(h, "caddy.logging.encoders", name, ENCODER_MODULES)
                log.encoder = module_object(encoder, "format", name)
            elif option == "level":
                if not h.next_arg():
                    raise h.arg_err()
                log.level = h.val()
                if h.next_arg():
                    raise h.arg_err()
            elif option in ("include", "exclude"):
                if not as_global_option:
                    raise h.arg_err()
                names = getattr(log, option)
                while h.next_arg():
                    names = (names or []) + [h.val()]
                setattr(log, option, names)
            else:
                raise h.err(f"unrecognized subdirective: {option}")

        named = NamedCustomLog()
        if not log.is_empty():
            if as_global_option:
                named = NamedCustomLog(global_log_name, log)
            else:
                counter = state.get("logCounter", 0)
                name = f"log{counter}"
                log.include = [ACCESS_LOGGER_PREFIX + name]
                named = NamedCustomLog(name, log)
                state["logCounter"] = counter + 1
        values.append(ConfigValue("custom_log", named))
    return values


@directive("log")
def parse_log(h: Helper) -> list[ConfigValue]:
    return parse_log_block(h, h.state)


def parse_log_option(d: Dispenser, existing: Any) -> list[ConfigValue]:
    """The global ``log [name] {...}`` option; several of them accumulate (the core folds them)."""
    names: set[str] = set()
    for value in existing or ():
        names.add(value.value.name)
    return parse_log_block(d, {}, names)


# -- the top-level "logging" object ---------------------------------------


def build_logging(options: Mapping[str, Any], pairings: Iterable[Any]) -> JSONObject | None:
    """The config's ``logging`` object, from the global ``log`` options and the sites' logs.

    A port of the end of Caddy's Setup: ``debug`` sets DEBUG on every logger
    without a level, and each logger that includes some namespaces excludes
    them from the default logger (so access logs are not written twice).
    The CustomLog objects are updated in place, as Caddy does.
    """
    debug = "debug" in options
    custom_logs: list[NamedCustomLog] = []
    has_default_log = False

    def add(named: NamedCustomLog) -> None:
        nonlocal has_default_log
        if not named.name:
            return
        if named.name == DEFAULT_LOGGER_NAME:
            has_default_log = True
        if debug and not named.log.level:
            named.log.level = "DEBUG"
        custom_logs.append(named)

    for value in options.get("log") or ():
        add(value.value)
    if not has_default_log and debug:
        custom_logs.append(NamedCustomLog(DEFAULT_LOGGER_NAME, CustomLog(level="DEBUG")))
    for pairing in pairings:
        for block in pairing.server_blocks:
            for value in block.pile.get("custom_log", ()):
                add(value.value)

    if not custom_logs:
        return None
    logs: dict[str, CustomLog] = {}
    for named in custom_logs:
        logs[named.name] = named.log
        if named.name != DEFAULT_LOGGER_NAME and named.log.include:
            default_log = logs.setdefault(DEFAULT_LOGGER_NAME, CustomLog())
            default_log.exclude = (default_log.exclude or []) + named.log.include
    return {"logs": GoMap((name, log.to_json()) for name, log in logs.items())}
