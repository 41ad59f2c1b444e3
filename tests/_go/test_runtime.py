"""Go's ``runtime.GOOS`` and ``runtime.GOARCH``."""

from __future__ import annotations

from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.runtime import goarch, goos


class RuntimeTests(SynchronousTestCase):
    def test_goos(self) -> None:
        """Python's platform names become Go's: ``win32`` is ``windows``, version digits go."""
        for platform, name in (("linux", "linux"), ("win32", "windows"), ("darwin", "darwin"), ("freebsd13", "freebsd")):
            with mock.patch("sys.platform", platform):
                self.assertEqual(goos(), name)

    def test_goarch(self) -> None:
        """Machine names become Go's architectures; an unknown one stays as it is, lower case."""
        for machine, name in (("x86_64", "amd64"), ("aarch64", "arm64"), ("i686", "386"), ("MIPS", "mips")):
            with mock.patch("platform.machine", return_value=machine):
                self.assertEqual(goarch(), name)
