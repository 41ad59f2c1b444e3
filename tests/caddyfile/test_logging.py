"""The log directive / global option values and the top-level logging object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile import directives  # noqa: F401  (registers everything)
from txcaddy.caddyfile.directives.logging import (
    CustomLog,
    NamedCustomLog,
    build_logging,
    parse_log,
    parse_log_option,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import ConfigValue, GroupCounter, Helper
from txcaddy.caddyfile.jsonenc import encode


def site_log(text: str, state: dict[str, Any]) -> list[ConfigValue]:
    h = Helper(
        Dispenser.from_text(text),
        options={},
        warnings=[],
        matcher_defs={},
        parent_block=None,
        group_counter=GroupCounter(),
        state=state,
    )
    return parse_log(h)


@dataclass
class Block:
    pile: dict[str, list[ConfigValue]] = field(default_factory=dict)


@dataclass
class Pairing:
    server_blocks: list[Block]


class LogDirectiveTests(SynchronousTestCase):
    def test_names_count_across_the_adaptation(self) -> None:
        """Log names count up across sites (log0, log1); an empty log block names none."""
        state: dict[str, Any] = {}
        first = site_log("log {\n output stdout\n}", state)
        empty = site_log("log", state)
        second = site_log("log {\n level ERROR\n}", state)
        self.assertEqual(first[0].value.name, "log0")
        self.assertEqual(first[0].value.log.include, ["http.log.access.log0"])
        # an empty log block enables access logs but names no logger
        self.assertEqual(empty[0].value, NamedCustomLog())
        self.assertEqual(second[0].value.name, "log1")
        self.assertEqual(state["logCounter"], 2)

    def test_writer_and_encoder_are_module_objects(self) -> None:
        """The output and format blocks encode as writer and encoder modules, keys in order."""
        values = site_log(
            "log {\n output file /x.log {\n  roll_keep_for 25h\n }\n format json {\n  time_local\n }\n}",
            {},
        )
        log = values[0].value.log
        self.assertEqual(
            encode(log),
            '{"writer":{"filename":"/x.log","output":"file","roll_keep_days":2},'
            '"encoder":{"format":"json","time_local":true},"include":["http.log.access.log0"]}',
        )

    def test_global_option_names(self) -> None:
        """The global log option takes its name from its argument and keeps its include."""
        values = parse_log_option(Dispenser.from_text("log access {\n include a\n}"), None)
        self.assertEqual(values[0].value.name, "access")
        self.assertEqual(values[0].value.log.include, ["a"])


class BuildLoggingTests(SynchronousTestCase):
    def test_nothing_configured(self) -> None:
        """No log option and no site logs give no logging object."""
        self.assertIsNone(build_logging({}, []))

    def test_debug_alone(self) -> None:
        """The debug option alone makes a default log at DEBUG level."""
        self.assertEqual(encode(build_logging({"debug": True}, [])), '{"logs":{"default":{"level":"DEBUG"}}}')

    def test_access_logs_excluded_from_default_once_per_server(self) -> None:
        """Site loggers are excluded from the default once per server block visited, as Caddy."""
        named = NamedCustomLog("log0", CustomLog(include=["http.log.access.log0"]))
        sites = Block({"custom_log": [ConfigValue("custom_log", named), ConfigValue("custom_log", NamedCustomLog())]})
        # the same block served on two listeners is visited twice, as in Caddy
        logging = build_logging({}, [Pairing([sites]), Pairing([sites])])
        self.assertEqual(
            encode(logging),
            '{"logs":{"default":{"exclude":["http.log.access.log0","http.log.access.log0"]},'
            '"log0":{"include":["http.log.access.log0"]}}}',
        )

    def test_global_default_replaces_earlier_implicit_default(self) -> None:
        """A global "default" log replaces the implicit one; debug goes to the other loggers."""
        options = {
            "debug": True,
            "log": [
                ConfigValue("custom_log", NamedCustomLog("a", CustomLog(include=["x"]))),
                ConfigValue("custom_log", NamedCustomLog("default", CustomLog(level="WARN"))),
            ],
        }
        self.assertEqual(
            encode(build_logging(options, [])),
            '{"logs":{"a":{"level":"DEBUG","include":["x"]},"default":{"level":"WARN"}}}',
        )
