"""Go's ``sort.SliceStable``, step for step."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.sort import slice_stable


class SliceStableTests(SynchronousTestCase):
    def test_matches_a_stable_sort_for_transitive_orders(self) -> None:
        """With a transitive order the result is the stable sort's, whatever the length."""
        rng = random.Random(7)
        for _ in range(100):
            items = [(rng.randint(0, 4), i) for i in range(rng.randint(0, 90))]
            ordered = list(items)
            slice_stable(ordered, lambda a, b: a[0] < b[0])
            self.assertEqual(ordered, sorted(items, key=lambda a: a[0]))
