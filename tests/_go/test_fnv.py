"""Go's ``hash/fnv`` FNV-1a, 32 bits."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.fnv import fnv1a_32


class FNV1a32Tests(SynchronousTestCase):
    def test_vectors(self) -> None:
        """The published FNV-1a 32-bit values (empty, ``a``, ``foobar``)."""
        self.assertEqual(fnv1a_32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a_32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a_32(b"foobar"), 0xBF9CF968)

    def test_continues(self) -> None:
        """Passing an earlier hash as the state continues it, as further ``Write`` calls do."""
        self.assertEqual(fnv1a_32(b"bar", fnv1a_32(b"foo")), fnv1a_32(b"foobar"))
