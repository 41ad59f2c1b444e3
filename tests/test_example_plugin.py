"""The example plugin package of docs/plugins.md (docs/examples/plugin), installed with pip
into a fresh virtualenv and used from a Caddyfile by that virtualenv's Python.

No network is needed: ``--no-deps --no-build-isolation`` builds with the setuptools at hand,
and txcaddy comes from this checkout (``PYTHONPATH``). The test skips when the interpreter
cannot make a virtualenv or pip cannot build a wheel offline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "docs", "examples", "plugin")

CADDYFILE = """\
:8080 {
\tgreet /hello txcaddy
\treverse_proxy /api/* 127.0.0.1:9001 127.0.0.1:9002 {
\t\tlb_policy pinned 127.0.0.1:9002
\t}
\trespond "depth {example.path_depth}"
}
"""

# Run by the virtualenv's Python: adapt, load, serve two requests, ask the proxy's policy.
SCRIPT = """\
import json, sys
from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.service import plain_json
from txcaddy.testing import make_request, serve

config = plain_json(adapt(open(sys.argv[1]).read())[0])
routes_config = config["apps"]["http"]["servers"]["srv0"]["routes"]
context = LoadContext()
routes = context.load_routes(routes_config)
proxy = [h for r in routes.routes for h in r.handlers if type(h).__name__ == "ReverseProxyHandler"][0]
chosen = proxy.policy.select(proxy.upstreams, make_request("GET", "/api/x"), None)
print(json.dumps({
    "hello": serve(routes, make_request("GET", "/hello")).body.decode(),
    "depth": serve(routes, make_request("GET", "/a/b/c")).body.decode(),
    "chosen": chosen.dial,
    "policy": type(proxy.policy).__module__,
}))
"""


#: Exits 0 when setuptools can build a wheel (by itself from 70.1, else with the wheel package).
PROBE = """\
try:
    import setuptools.command.bdist_wheel
except ImportError:
    import wheel.bdist_wheel
"""


class ExamplePluginPackageTests(TestCase):
    def setUp(self) -> None:
        if importlib.util.find_spec("venv") is None or importlib.util.find_spec("pip") is None:
            raise SkipTest("venv or pip is not available to this Python")
        paths = [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        probe = subprocess.run([sys.executable, "-c", PROBE], env=self.env, capture_output=True, timeout=120)
        if probe.returncode != 0:
            raise SkipTest("setuptools cannot build a wheel offline here (needs setuptools>=70.1 or wheel)")
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.venv = os.path.join(self.work, "venv")
        self.check([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", self.venv])
        self.python = os.path.join(self.venv, "bin", "python")
        # a copy, so that the build leaves nothing in the checkout
        source = os.path.join(self.work, "plugin")
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        self.check([self.python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", source])
        self.caddyfile = os.path.join(self.work, "Caddyfile")
        with open(self.caddyfile, "w") as f:
            f.write(CADDYFILE)

    def check(self, argv: list[str]) -> str:
        result = subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            self.fail(f"{argv[:4]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def test_adapt_uses_the_plugins_unmarshallers(self) -> None:
        """``txcaddy adapt`` in the virtualenv writes the plugin's directive and lb_policy JSON."""
        config = json.loads(self.check([self.python, "-m", "txcaddy.cli", "adapt", "--config", self.caddyfile]))
        handlers = [h for r in config["apps"]["http"]["servers"]["srv0"]["routes"] for h in r["handle"]]
        self.assertIn({"handler": "greet", "name": "txcaddy"}, handlers)
        (proxy,) = [h for h in handlers if h["handler"] == "reverse_proxy"]
        self.assertEqual(proxy["load_balancing"]["selection_policy"], {"dial": "127.0.0.1:9002", "policy": "pinned"})

    def test_installed_plugin_serves_chooses_and_fills_placeholders(self) -> None:
        """The installed handler answers, the policy pins its upstream, the placeholder has its value."""
        script = os.path.join(self.work, "use.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        result = json.loads(self.check([self.python, script, self.caddyfile]))
        self.assertEqual(result, {
            "hello": "hello, txcaddy\n",
            "depth": "depth 3",
            "chosen": "127.0.0.1:9002",
            "policy": "txcaddy_example",
        })

    def test_list_modules_names_the_distribution(self) -> None:
        """list-modules shows the plugin's modules as non-standard, with its distribution and version."""
        out = self.check([self.python, "-m", "txcaddy.cli", "list-modules", "--skip-standard", "--versions", "--packages"])
        self.assertEqual(out.splitlines(), [
            "http.handlers.greet 0.1.0 txcaddy-example-plugin",
            "http.reverse_proxy.selection_policies.pinned 0.1.0 txcaddy-example-plugin",
            "",
            "  Non-standard modules: 2",
            "",
            "  Unknown modules: 0",
        ])
