"""Go's ``fmt.Sprint`` (``%v``) of the values placeholders hold."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.fmt import sprint
from txcaddy._go.time import Duration


class SprintTests(SynchronousTestCase):
    def test_scalars(self) -> None:
        """nil is ``<nil>``, booleans are words, floats take ``%g``'s shortest form."""
        self.assertEqual(sprint(None), "<nil>")
        self.assertEqual(sprint("s"), "s")
        self.assertEqual(sprint(3.0), "3")
        self.assertEqual(sprint(1e6), "1e+06")
        self.assertEqual(sprint(123456.0), "123456")
        self.assertEqual(sprint(0.00001), "1e-05")
        self.assertEqual(sprint(False), "false")
        self.assertEqual(sprint(-7), "-7")
        self.assertEqual(sprint(b"bytes"), "bytes")

    def test_slices_and_maps(self) -> None:
        """Slices print as ``[a b]`` and maps as ``map[k:v]`` with sorted keys, nested alike."""
        self.assertEqual(sprint(["a", 1, None, [2.5]]), "[a 1 <nil> [2.5]]")
        self.assertEqual(sprint({"b": 1, "a": [True]}), "map[a:[true] b:1]")

    def test_stringers(self) -> None:
        """Other values print with their ``String()`` (``str``), like a ``time.Duration``."""
        self.assertEqual(sprint(Duration(1_500_000)), "1.5ms")
