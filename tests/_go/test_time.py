"""Go's ``time``: ``Duration.String``, ``ParseDuration``, ``Time.String`` and layouts."""

from __future__ import annotations

import os
import random
import time

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.errors import GoError
from txcaddy._go.time import (
    Duration,
    Time,
    compile_layout,
    duration_string,
    format_layout,
    parse_duration,
    time_json,
)


class DurationStringTests(SynchronousTestCase):
    def test_units(self) -> None:
        """Below a second one unit with a fraction; from a second on ``h``, ``m`` and ``s``."""
        self.assertEqual(duration_string(0), "0s")
        self.assertEqual(duration_string(999), "999ns")
        self.assertEqual(duration_string(1500), "1.5µs")
        self.assertEqual(duration_string(2_000_000), "2ms")
        self.assertEqual(duration_string(120 * 10**9), "2m0s")
        self.assertEqual(duration_string(3600 * 10**9), "1h0m0s")
        self.assertEqual(duration_string(-1500), "-1.5µs")
        self.assertEqual(duration_string(90 * 10**9 + 1), "1m30.000000001s")
        self.assertEqual(duration_string(-5_400_000_000_000), "-1h30m0s")
        self.assertEqual(duration_string(61_500_000_000), "1m1.5s")

    def test_time_json(self) -> None:
        """``Time.MarshalJSON`` of a UTC time: RFC 3339, trailing zeros of the fraction dropped."""
        self.assertEqual(time_json(1_641_092_645_123_456_789), "2022-01-02T03:04:05.123456789Z")
        self.assertEqual(time_json(1_641_092_645_100_000_000), "2022-01-02T03:04:05.1Z")
        self.assertEqual(time_json(0), "1970-01-01T00:00:00Z")

    def test_duration_prints_like_go(self) -> None:
        """``Duration`` is an int of nanoseconds whose ``str`` is Go's."""
        self.assertEqual(str(Duration(-3 * 10**9)), "-3s")
        self.assertEqual(Duration(5) + 1, 6)

    def test_parse_reads_what_string_writes(self) -> None:
        """``ParseDuration(d.String()) == d`` for durations of every size."""
        rng = random.Random(11)
        for _ in range(2000):
            ns = rng.choice([rng.randint(-10**4, 10**4), rng.randint(-10**12, 10**12), rng.randint(-10**18, 10**18)])
            self.assertEqual(parse_duration(duration_string(ns)), ns, ns)


class ParseDurationTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Fractions, several units, a sign, both micro signs and a bare ``0`` parse."""
        self.assertEqual(parse_duration("1.5h"), 5_400_000_000_000)
        self.assertEqual(parse_duration("2m30s"), 150_000_000_000)
        self.assertEqual(parse_duration("-1s"), -1_000_000_000)
        self.assertEqual(parse_duration("1µs"), parse_duration("1μs"))
        self.assertEqual(parse_duration("1us"), 1000)
        self.assertEqual(parse_duration(".5s"), 500_000_000)
        self.assertEqual(parse_duration("0"), 0)

    def test_errors(self) -> None:
        """Go's three messages: invalid, missing unit, unknown unit (a day is unknown)."""
        for text, message in (
            ("", 'time: invalid duration ""'),
            ("5", 'time: missing unit in duration "5"'),
            ("5x", 'time: unknown unit "x" in duration "5x"'),
            ("1d", 'time: unknown unit "d" in duration "1d"'),
            (".s", 'time: invalid duration ".s"'),
        ):
            with self.assertRaises(GoError) as caught:
                parse_duration(text)
            self.assertEqual(str(caught.exception), message, text)


T0 = 1700000000.5  # 2023-11-14T22:13:20.5Z


class LayoutTests(SynchronousTestCase):
    def format(self, layout: str, ts: float = T0 + 0.0123) -> str:
        return format_layout(compile_layout(layout), ts, False)

    def test_layouts(self) -> None:
        """Every kind of layout field, read as Go reads it, in UTC, to the microsecond."""
        cases = [
            ("2006-01-02T15:04:05Z07:00", "2023-11-14T22:13:20Z"),
            ("2006-01-02T15:04:05.999999999-07:00", "2023-11-14T22:13:20.5123+00:00"),  # to the µs
            ("Mon Jan _2 15:04:05.000000 MST 2006 pm", "Tue Nov 14 22:13:20.512300 UTC 2023 pm"),
            ("02/Jan/2006:15:04:05 -0700", "14/Nov/2023:22:13:20 +0000"),
            ("Monday January 2 3:4:5 PM 06 002 __2", "Tuesday November 14 10:13:20 PM 23 318 318"),
            ("_2006 Month 1,000", "_2023 Month 11,512"),
            ("15h04 .9 .0 Z0700 Z07", "22h13 .5 .5 Z Z"),
        ]
        for layout, expected in cases:
            self.assertEqual(self.format(layout), expected, layout)
        self.assertEqual(self.format("05.999", float(T0 - 0.5)), "20")


class TimeTests(SynchronousTestCase):
    def setUp(self) -> None:
        old_tz = os.environ.get("TZ")
        os.environ["TZ"] = "XYZ-2"  # a POSIX zone 2 hours east of UTC, no tz database needed
        time.tzset()
        self.addCleanup(self._restore_tz, old_tz)

    def _restore_tz(self, old_tz: str | None) -> None:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()

    def test_time_string(self) -> None:
        """``Time.String()``: local time, fraction without trailing zeros, offset and zone."""
        self.assertEqual(str(Time(1700000000.25)), "2023-11-15 00:13:20.25 +0200 XYZ")
        self.assertEqual(str(Time(1700000000.0)), "2023-11-15 00:13:20 +0200 XYZ")

    def test_local_layout(self) -> None:
        """With ``local`` the layout uses the local offset; without it UTC and ``Z``."""
        parts = compile_layout("15:04 -0700 Z07:00 MST")
        self.assertEqual(format_layout(parts, 1700000000.0, True), "00:13 +0200 +02:00 XYZ")
        self.assertEqual(format_layout(parts, 1700000000.0, False), "22:13 +0000 Z UTC")

    def test_layout(self) -> None:
        """A Go layout formats the fields it names and keeps everything else as text."""
        parts = compile_layout("2006-01-02T15:04:05.000Z07:00 Mon Jan _2 pm")
        self.assertEqual(format_layout(parts, 1700000000.25, False), "2023-11-14T22:13:20.250Z Tue Nov 14 pm")
        self.assertEqual(format_layout(compile_layout("Janx"), 0.0, False), "Janx")
