"""Go's ``io/fs``: ``FileMode`` bits of a Unix mode and ``*PathError`` texts."""

from __future__ import annotations

import errno
import os

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.fs import file_mode, path_error


class FileModeTests(SynchronousTestCase):
    def test_types(self) -> None:
        """Directories, symlinks and devices get Go's type bits; plain files only permissions."""
        self.assertEqual(file_mode(0o40755), (1 << 31) | 0o755)
        self.assertEqual(file_mode(0o120777), (1 << 27) | 0o777)
        self.assertEqual(file_mode(0o100644), 0o644)
        self.assertEqual(file_mode(0o20600), (1 << 26) | (1 << 21) | 0o600)
        self.assertEqual(file_mode(0o10644), (1 << 25) | 0o644)

    def test_special_bits(self) -> None:
        """setuid, setgid and sticky move to Go's own bits."""
        self.assertEqual(file_mode(0o104755), (1 << 23) | 0o755)
        self.assertEqual(file_mode(0o42775), (1 << 31) | (1 << 22) | 0o775)
        self.assertEqual(file_mode(0o41777), (1 << 31) | (1 << 20) | 0o777)


class PathErrorTests(SynchronousTestCase):
    def test_errno_text(self) -> None:
        """``op path: reason`` with the C library's text in lower case first."""
        error = OSError(errno.EACCES, os.strerror(errno.EACCES))
        self.assertEqual(path_error("stat", "/srv/x", error), "stat /srv/x: permission denied")

    def test_no_errno_is_einval(self) -> None:
        """An error without a text (a NUL byte in the path) reads as ``invalid argument``."""
        self.assertEqual(path_error("open", "/a\x00", ValueError("embedded null byte")), "open /a\x00: invalid argument")
