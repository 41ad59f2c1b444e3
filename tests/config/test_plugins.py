"""A third-party module found through Twisted's plugin system, as docs/plugins.md describes."""

from __future__ import annotations

import os
import re
import sys

from twisted.trial.unittest import SynchronousTestCase

import twisted.plugins
from txcaddy.config import registry
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.testing import make_request, serve

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md")


def example_plugin_source() -> str:
    with open(DOCS) as f:
        match = re.search(r"```python\n(.*?)```", f.read(), re.S)
    assert match is not None, f"no python block in {DOCS}"
    return match.group(1)


class PluginTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = os.path.abspath(self.mktemp())
        plugins = os.path.join(root, "twisted", "plugins")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "hello_plugin.py"), "w") as f:
            f.write(example_plugin_source())
        sys.path.insert(0, root)
        twisted.plugins.__path__.append(plugins)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(twisted.plugins.__path__.remove, plugins)
        self.patch(registry, "_loaded", False)  # undone after _forget_plugin, below
        self.addCleanup(self._forget_plugin)

    def _forget_plugin(self) -> None:
        registry.MODULES.pop("http.handlers.hello", None)
        registry._loaded = False
        sys.modules.pop("twisted.plugins.hello_plugin", None)

    def test_plugin_handler_serves(self) -> None:
        """The docs/plugins.md example, found as a Twisted plugin, loads and serves its greeting."""
        handler = LoadContext().load_handler({"handler": "hello", "name": "txcaddy"})
        response = serve(handler, make_request("GET", "/"))
        self.assertEqual(response.body, b"hello, txcaddy\n")
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; charset=utf-8")

    def test_unknown_module_is_a_clear_error(self) -> None:
        """Loading an unregistered handler names the module that is not registered."""
        with self.assertRaises(ConfigError) as caught:
            LoadContext().load_handler({"handler": "nope"})
        self.assertEqual(
            str(caught.exception),
            "loading module 'http.handlers.nope': module not registered: http.handlers.nope",
        )
