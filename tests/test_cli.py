"""The ``txcaddy`` command and ``twistd caddy`` options."""

from __future__ import annotations

import io
import json
import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from txcaddy import cli
from txcaddy.service import CaddyService
from txcaddy.tap import Options, makeService

SITE = ":8080 {\n\trespond /hi \"hello\" 200\n}\n"
SITE_JSON = (
    '{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"match":[{"path":["/hi"]}],'
    '"handle":[{"body":"hello","handler":"static_response","status_code":200}]}]}}}}}'
)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.caddyfile = os.path.join(self.dir, "Caddyfile")
        with open(self.caddyfile, "w") as f:
            f.write(SITE)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def test_adapt_prints_caddys_json(self) -> None:
        """adapt prints Caddy's compact JSON for a Caddyfile and exits 0."""
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual((code, out, err), (0, SITE_JSON + "\n", ""))

    def test_adapt_pretty_uses_tabs(self) -> None:
        """adapt --pretty indents the same JSON with tabs, as Caddy does."""
        code, out, _ = self.run_cli("adapt", "--config", self.caddyfile, "--pretty")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith('{\n\t"apps": {\n\t\t"http": {'))
        self.assertEqual(json.loads(out), json.loads(SITE_JSON))

    def test_adapt_json_config_passes_through(self) -> None:
        """adapt of a .json config prints it unchanged."""
        path = os.path.join(self.dir, "caddy.json")
        with open(path, "w") as f:
            f.write(SITE_JSON)
        code, out, _ = self.run_cli("adapt", "--config", path)
        self.assertEqual((code, out), (0, SITE_JSON + "\n"))

    def test_bad_config_is_one_clear_line(self) -> None:
        """A bad Caddyfile exits 1 with one "Error:" line naming file, line and token."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n\trespond {\n\t\tfoo\n\t}\n}\n")
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(
            err,
            f"Error: parsing caddyfile tokens for 'respond': {self.caddyfile}:2 - Error during "
            "parsing: Wrong argument count or unexpected line ending after 'respond'\n",
        )

    def test_missing_file(self) -> None:
        """A missing config file exits 1 with Go's error naming the file (``open …: no such file or directory``)."""
        code, _, err = self.run_cli("adapt", "--config", os.path.join(self.dir, "nope"))
        self.assertEqual(code, 1)
        self.assertIn("nope: no such file or directory", err)

    def test_warnings_go_to_stderr(self) -> None:
        """Adapting warnings, such as an unformatted Caddyfile, go to stderr."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n  respond ok\n}\n")
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual(code, 0)
        self.assertIn("Caddyfile:2: Caddyfile input is not formatted", err)

    def test_validate(self) -> None:
        """validate says "Valid configuration", or exits 1 naming an unregistered module."""
        self.assertEqual(self.run_cli("validate", "--config", self.caddyfile)[:2], (0, "Valid configuration\n"))
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as f:
            f.write('{"apps":{"http":{"servers":{"s":{"listen":[":1"],"routes":[{"handle":[{"handler":"nope"}]}]}}}}}')
        code, _, err = self.run_cli("validate", "--config", path)
        self.assertEqual(code, 1)
        self.assertIn("module not registered: http.handlers.nope", err)

    def test_fmt(self) -> None:
        """fmt prints the formatted Caddyfile; --overwrite writes it back to the file."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n    respond   ok\n}")
        code, out, _ = self.run_cli("fmt", self.caddyfile)
        self.assertEqual((code, out), (0, ":8080 {\n\trespond ok\n}\n"))
        self.run_cli("fmt", "--overwrite", self.caddyfile)
        with open(self.caddyfile) as f:
            self.assertEqual(f.read(), ":8080 {\n\trespond ok\n}\n")


class TwistdOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_caddyfile_is_adapted(self) -> None:
        """twistd caddy -c adapts a Caddyfile into a CaddyService with its listeners."""
        options = Options()
        options.parseOptions(["-c", self.write("Caddyfile", SITE)])
        service = makeService(options)
        assert isinstance(service, CaddyService), service
        self.assertEqual(service.listenAddresses(), {"srv0": [":8080"]})

    def test_json_by_adapter_flag(self) -> None:
        """--adapter json loads the file as JSON config."""
        options = Options()
        options.parseOptions(["-c", self.write("conf", SITE_JSON), "--adapter", "json"])
        service = makeService(options)
        assert isinstance(service, CaddyService), service
        self.assertEqual(service.config, json.loads(SITE_JSON))

    def test_bad_config_is_a_usage_error(self) -> None:
        """A bad Caddyfile is a UsageError naming file, line and problem."""
        options = Options()
        path = self.write("Caddyfile", ":8080 {\n\tnope\n}\n")
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["-c", path])
        self.assertEqual(str(caught.exception), f"{path}:2: unrecognized directive: nope")

    def test_unknown_adapter(self) -> None:
        """An unknown --adapter is a UsageError naming it."""
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["-c", self.write("x", SITE), "--adapter", "yaml"])
        self.assertIn("unrecognized config adapter 'yaml'", str(caught.exception))

    def test_plugin_is_discoverable(self) -> None:
        """twistd finds the caddy service maker through Twisted's plugin system."""
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        names = {p.tapname for p in getPlugins(IServiceMaker)}
        self.assertIn("caddy", names)
