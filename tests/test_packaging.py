"""What setup.cfg promises: typed package data, and Twisted held below its next major version."""

from __future__ import annotations

import os

from setuptools.config.setupcfg import read_configuration
from twisted.trial.unittest import SynchronousTestCase

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PackagingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.options = read_configuration(os.path.join(CHECKOUT, "setup.cfg"))["options"]

    def test_ships_py_typed(self) -> None:
        """The PEP 561 marker exists and is package data, so users' mypy reads our hints."""
        self.assertTrue(os.path.isfile(os.path.join(CHECKOUT, "txcaddy", "py.typed")))
        self.assertIn("py.typed", self.options["package_data"]["txcaddy"])

    def test_twisted_is_pinned_below_the_next_major_version(self) -> None:
        """_twisted.py relies on private Twisted names: a new major version must be tried first."""
        import twisted

        (requirement,) = [r for r in self.options["install_requires"] if r.startswith("twisted")]
        major = int(twisted.__version__.split(".")[0])
        self.assertIn(f"<{major + 1}", requirement)


class CompiledBuildTests(SynchronousTestCase):
    """setup.py's optional mypyc build (TXCADDY_MYPYC=1) stays opt-in."""

    def test_default_build_is_pure_python(self) -> None:
        """Without TXCADDY_MYPYC=1 setup.py declares no C extension to build."""
        import subprocess
        import sys

        # In a process of its own: setuptools' set-up state does not survive other imports
        # of distutils in a long test run.
        script = (
            "from setuptools._distutils.core import run_setup\n"
            "dist = run_setup('setup.py', ['--name'], stop_after='init')\n"
            "print(repr(getattr(dist, 'ext_modules', None)))\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "TXCADDY_MYPYC"}
        done = subprocess.run([sys.executable, "-c", script], cwd=CHECKOUT, env=env, capture_output=True,
                              text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(done.stdout.strip().splitlines()[-1], ("None", "[]"))

    def test_compiled_modules_exist(self) -> None:
        """Every module the compiled build names is a source file of the package."""
        import ast

        with open(os.path.join(CHECKOUT, "setup.py")) as f:
            tree = ast.parse(f.read())
        (compiled,) = [ast.literal_eval(node.value) for node in tree.body
                       if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED"]
        self.assertTrue(compiled)
        for path in compiled:
            self.assertTrue(path.startswith("txcaddy/") and path.endswith(".py"), path)
            self.assertTrue(os.path.isfile(os.path.join(CHECKOUT, path)), path)
