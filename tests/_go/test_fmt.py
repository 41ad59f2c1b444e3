"""Go's ``fmt.Sprint`` (``%v``) of the values placeholders hold."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.fmt import sprint, sprint_go_syntax
from txcaddy._go.strconv import format_float_g
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

    def test_floats_are_format_g(self) -> None:
        """A float64 prints as ``FormatFloat(v, 'g', -1, 64)``: zap's console encoder gets
        ``1.796626382437853e+09`` for an epoch time from Caddy 2.6.2, not the ``'f'`` form."""
        edges = [(0.0, "0"), (-0.0, "-0"), (1e-5, "1e-05"), (1e20, "1e+20"), (1e21, "1e+21"),
                 (123456789.0, "1.23456789e+08"), (float("nan"), "NaN"), (float("inf"), "+Inf"),
                 (float("-inf"), "-Inf"), (1796626382.437853, "1.796626382437853e+09"), (0.0001, "0.0001")]
        for value, text in edges:
            self.assertEqual(sprint(value), text, value)
            self.assertEqual(format_float_g(value), text, value)


class SprintGoSyntaxTests(SynchronousTestCase):
    def test_string_list(self) -> None:
        """``%#v`` of a ``[]string`` quotes each string as ``strconv.Quote`` (Caddy 2.6.2's ``bind`` error)."""
        self.assertEqual(sprint_go_syntax(["a\"b", "c"]), '[]string{"a\\"b", "c"}')
        self.assertEqual(sprint_go_syntax([]), "[]string{}")
