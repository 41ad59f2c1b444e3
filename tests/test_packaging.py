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
