"""Global options: behaviour the fixtures cannot show (values handed to the core, no global state)."""

from __future__ import annotations

from typing import Any

from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from txcaddy.caddyfile import (
    directives,  # noqa: F401  (registers everything)
    registry,
)
from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile.directives.options import (
    PKI,
    CertificateAuthority,
    OCSPConfig,
    admin_json,
    parse_opt_order,
    storage_json,
)
from txcaddy.caddyfile.directives.serveroptions import (
    ServerOptions,
    apply_server_options,
    parse_server_options,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import App
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.errors import ConfigError


def option(text: str, existing: object = None) -> Any:
    """Run the global option on the first line(s) of ``text`` as the core does.

    Its value is whatever that option's parser makes (``GlobalOptionFunc`` returns Any).
    """
    d = Dispenser.from_text(text)
    name = d.tokens[0].text
    return registry.GLOBAL_OPTIONS[name](Dispenser(d.tokens), existing)


class OrderTests(SynchronousTestCase):
    def test_starts_from_default_and_leaves_it_alone(self) -> None:
        """order moves a directive in a copy of the default order; the default stays as it was."""
        default = list(registry.DEFAULT_DIRECTIVE_ORDER)
        order = option("order respond first")
        self.assertEqual(order[0], "respond")
        self.assertEqual(order.count("respond"), 1)
        self.assertEqual(list(registry.DEFAULT_DIRECTIVE_ORDER), default)
        # a second, independent adaptation starts from the default again
        self.assertEqual(option("order vars last")[0], default[0])

    def test_builds_on_existing_order_without_mutating_it(self) -> None:
        """order applies to an existing order in a new list, leaving the old one unchanged."""
        existing = ["a", "respond", "b"]
        order = parse_opt_order(Dispenser.from_text("order respond after b"), existing)
        self.assertEqual(order, ["a", "b", "respond"])
        self.assertEqual(existing, ["a", "respond", "b"])

    def test_before_unknown_other_drops_nothing_else(self) -> None:
        """order before an unknown directive removes the moved one and keeps all others."""
        order = option("order respond before nosuchdirective")
        self.assertNotIn("respond", order)
        self.assertEqual(len(order), len(registry.DEFAULT_DIRECTIVE_ORDER) - 1)


class ValueTests(SynchronousTestCase):
    def test_ports_and_durations(self) -> None:
        """Port options are ints, durations Go nanoseconds, default_bind a list of its arguments."""
        self.assertEqual(option("http_port 8080"), 8080)
        self.assertEqual(option("grace_period 1d"), 86_400_000_000_000)
        self.assertEqual(option("default_bind a b"), ["a", "b"])

    def test_flags(self) -> None:
        """Flag options without arguments are True."""
        for name in ("debug", "local_certs", "skip_install_trust"):
            self.assertIs(option(name), True)

    def test_admin_defaults_to_localhost(self) -> None:
        """admin alone listens on localhost:2019; "admin off" disables it; no option, no admin."""
        self.assertEqual(option("admin"), {"listen": "localhost:2019"})
        self.assertEqual(admin_json(option("admin off")), {"disabled": True})
        self.assertIsNone(admin_json(None))

    def test_storage_is_module_json(self) -> None:
        """storage becomes module JSON with its options; no option, no storage."""
        value = option("storage file_system /data")
        self.assertEqual(encode(storage_json(value)), '{"module":"file_system","root":"/data"}')
        self.assertIsNone(storage_json(None))

    def test_ocsp_stapling(self) -> None:
        """"ocsp_stapling off" disables stapling."""
        self.assertEqual(option("ocsp_stapling off"), OCSPConfig(disable_stapling=True))

    def test_cert_issuer_accumulates(self) -> None:
        """Each cert_issuer adds an issuer to a new list, in order, leaving the old list alone."""
        first = option("cert_issuer internal")
        both = option("cert_issuer acme", first)
        self.assertEqual([type(i).__name__ for i in both], ["InternalIssuer", "ACMEIssuer"])
        self.assertEqual(len(first), 1)

    def test_log_option_checks_existing_names(self) -> None:
        """A second unnamed global log is an error: the name "default" is taken."""
        first = option("log {\n level INFO\n}")
        self.assertEqual(first[0].value.name, "default")
        with self.assertRaises(ConfigError):
            option("log {\n level WARN\n}", first)

    def test_events_is_an_app(self) -> None:
        """The events option is an empty events app."""
        self.assertEqual(option("events {\n}"), App("events", {}))

    def test_pki(self) -> None:
        """pki's ca block configures the named authority ("local" when unnamed)."""
        pki = option("pki {\n ca {\n  name N\n }\n}")
        self.assertIsInstance(pki, PKI)
        self.assertEqual(pki.cas, {"local": CertificateAuthority(id="local", name="N")})

    def test_deprecated_protocol_block_logs_warnings(self) -> None:
        """servers' deprecated protocol block still applies its settings and logs two warnings."""
        messages: list[str] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            if event.get("log_namespace") == "caddyfile":
                messages.append(event["log_format"])

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        opts = parse_server_options(
            Dispenser.from_text("servers {\n protocol {\n  allow_h2c\n }\n}"), None
        )
        self.assertEqual(opts.protocols, ["h2c"])
        self.assertEqual(len(messages), 2)
        self.assertIn("DEPRECATED", messages[0])


class ApplyServerOptionsTests(SynchronousTestCase):
    def test_fields_set_in_server_order(self) -> None:
        """servers options fill in each server's fields in Caddy's order; the catch-all replaces."""
        servers: dict[str, dict[str, Any]] = {
            "srv0": {"listen": [":80"], "routes": [], "logs": {"skip_hosts": ["a"]}},
            "srv1": {"listen": [":81"], "listener_wrappers": [{"wrapper": "x"}]},
        }
        opts = ServerOptions(
            listener_address=":80",
            idle_timeout=5,
            strict_sni_host=False,
            should_log_credentials=True,
            metrics=True,
        )
        fallback = ServerOptions(protocols=["h1"])
        apply_server_options(servers, {"servers": [opts, fallback]}, [])
        self.assertEqual(
            list(servers["srv0"]),
            ["listen", "idle_timeout", "routes", "strict_sni_host", "logs", "metrics"],
        )
        self.assertEqual(servers["srv0"]["logs"], {"skip_hosts": ["a"], "should_log_credentials": True})
        self.assertEqual(servers["srv0"]["metrics"], {})
        # the catch-all entry replaces listener wrappers too, as Caddy does
        self.assertEqual(servers["srv1"], {"listen": [":81"], "protocols": ["h1"]})

    def test_without_servers_option_nothing_changes(self) -> None:
        """Without a servers option the servers are left unchanged."""
        servers = {"srv0": {"listen": [":80"]}}
        apply_server_options(servers, {}, [])
        self.assertEqual(servers, {"srv0": {"listen": [":80"]}})


class GoHelpersTests(SynchronousTestCase):
    def test_parse_bytes(self) -> None:
        """parse_bytes reads sizes as humanize.ParseBytes does, with its error messages."""
        self.assertEqual(parse_bytes("16KiB"), 16384)
        self.assertEqual(parse_bytes("1,000 kb"), 1_000_000)
        self.assertEqual(parse_bytes("1.5g"), 1_500_000_000)
        self.assertEqual(parse_bytes("42"), 42)
        with self.assertRaises(ValueError) as caught:
            parse_bytes("1zb")
        self.assertEqual(str(caught.exception), "unhandled size name: zb")
        with self.assertRaises(ValueError) as caught:
            parse_bytes("1.2.3mb")
        self.assertEqual(str(caught.exception), 'strconv.ParseFloat: parsing "1.2.3": invalid syntax')


class WorkersOptionTests(SynchronousTestCase):
    def test_number_or_auto(self) -> None:
        """``workers`` takes a positive number (an int in the JSON) or ``auto``."""
        self.assertEqual(option("workers 4"), 4)
        self.assertEqual(option("workers auto"), "auto")

    def test_refuses_other_values(self) -> None:
        """Zero, words and extra arguments are errors."""
        for text in ("workers 0", "workers many", "workers", "workers 2 3"):
            self.assertRaises(ConfigError, option, text)

    def test_top_level_json_key(self) -> None:
        """The adapted config carries it as txcaddy's top-level ``workers`` key."""
        from txcaddy.caddyfile.adapter import adapt

        config, _ = adapt("{\n\tworkers 3\n}\nhttp://example.com {\n\trespond ok\n}\n", "Caddyfile")
        self.assertEqual(config["workers"], 3)
