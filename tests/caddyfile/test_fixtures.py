"""Every fixture Caddyfile adapts to exactly the JSON Caddy 2.6.2 printed.

The answers (``NAME.json`` or ``NAME.error``) were recorded with the real
``caddy adapt`` by ``tools/make_fixtures.py``; one test method per fixture.
A ``NAME.txcaddy.json`` or ``NAME.txcaddy.error`` is txcaddy's answer where
it deliberately differs: DESIGN.md §1's tutorial forms, and error messages
to which txcaddy adds the file and line (or a "did you mean") that Caddy
leaves out. It takes precedence.
"""

from __future__ import annotations

import os
import pathlib

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.errors import ConfigError

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _make_test(path: pathlib.Path):
    def test(self: SynchronousTestCase) -> None:
        cwd = os.getcwd()
        os.chdir(path.parent)
        self.addCleanup(os.chdir, cwd)
        text = path.read_text()
        expected_json = path.with_suffix(".txcaddy.json")
        if not expected_json.exists():
            expected_json = path.with_suffix(".json")
        if expected_json.exists():
            output, _warnings = adapt_to_json(text, path.name, environ={})
            self.assertEqual(output, expected_json.read_text().strip())
        else:
            error_file = path.with_suffix(".txcaddy.error")
            if not error_file.exists():
                error_file = path.with_suffix(".error")
            expected_error = error_file.read_text().strip()
            with self.assertRaises(ConfigError) as caught:
                adapt_to_json(text, path.name, environ={})
            self.assertEqual(str(caught.exception), expected_error)

    test.__doc__ = f"{path.relative_to(FIXTURES)} adapts as Caddy 2.6.2 does"
    return test


class CaddyFixtureTests(SynchronousTestCase):
    """Generated: ``test_<folder>_<name>`` per fixture."""


for _path in sorted(FIXTURES.rglob("*.Caddyfile")):
    if not any(_path.with_suffix(s).exists() for s in (".json", ".error", ".txcaddy.json", ".txcaddy.error")):
        continue
    _name = "test_" + "_".join(_path.relative_to(FIXTURES).with_suffix("").parts).replace("-", "_").replace(".", "_")
    setattr(CaddyFixtureTests, _name, _make_test(_path))
