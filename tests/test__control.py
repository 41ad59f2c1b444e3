"""The supervisor/worker control channel: line framing and log value round trips."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._control import (
    LineDecoder,
    encode_message,
    unwire_fields,
    unwire_value,
    wire_fields,
    wire_value,
)
from txcaddy.logs._values import Duration, Plain, StringArray


class MessageTests(SynchronousTestCase):
    def test_encode_is_one_json_line_with_its_type(self) -> None:
        """A message is one line of JSON whose ``type`` names it."""
        line = encode_message("health", address="10.0.0.1:80", healthy=False)
        self.assertTrue(line.endswith(b"\n"))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertEqual(json.loads(line), {"type": "health", "address": "10.0.0.1:80", "healthy": False})

    def test_decoder_keeps_partial_lines(self) -> None:
        """Messages split anywhere across reads come out whole, in order, once."""
        data = encode_message("ready") + encode_message("stop")
        decoder = LineDecoder()
        seen = []
        for i in range(len(data)):
            seen += decoder.feed(data[i:i + 1])
        self.assertEqual([m["type"] for m in seen], ["ready", "stop"])
        self.assertEqual(decoder.feed(b""), [])

    def test_decoder_refuses_what_is_no_message(self) -> None:
        """A line that is not an object with a string ``type`` raises ValueError."""
        self.assertRaises(ValueError, LineDecoder().feed, b"[1, 2]\n")
        self.assertRaises(ValueError, LineDecoder().feed, b'{"type": 3}\n')
        self.assertRaises(ValueError, LineDecoder().feed, b"not json\n")

    def test_decoder_refuses_an_endless_line(self) -> None:
        """A partial line longer than the limit raises instead of growing without bound."""
        decoder = LineDecoder(max_line=10)
        self.assertRaises(ValueError, decoder.feed, b"x" * 11)

    def test_decoder_refuses_deeply_nested_json(self) -> None:
        """JSON nested past the parser's recursion limit is a ValueError, not a RecursionError."""
        self.assertRaises(ValueError, LineDecoder().feed, b"[" * 100_000 + b"\n")

    def test_decoder_refuses_a_whole_line_over_the_limit(self) -> None:
        """A complete line longer than the limit raises, even when it came in one read."""
        self.assertRaises(ValueError, LineDecoder(max_line=10).feed, b'{"type":"ready","x":"yyyy"}\n')


class WireTests(SynchronousTestCase):
    def test_log_value_types_survive(self) -> None:
        """Durations, header arrays and plain objects come back with their types (encoders
        format them differently from ints, lists and dicts)."""
        fields = [
            ("duration", Duration(1500)),
            ("request", Plain({"headers": Plain({"Accept": StringArray(["*/*"])}), "port": "80"})),
            ("size", 12),
            ("ratio", 0.5),
            ("list", [1, "a"]),
            ("map", {"k": "v"}),
            ("none", None),
        ]
        back = unwire_fields(json.loads(json.dumps(wire_fields(fields))))
        self.assertEqual(back, fields)
        self.assertIsInstance(back[0][1], Duration)
        self.assertIsInstance(back[1][1], Plain)
        self.assertIsInstance(back[1][1]["headers"]["Accept"], StringArray)
        self.assertNotIsInstance(back[2][1], Duration)
        self.assertNotIsInstance(back[5][1], Plain)

    def test_unknown_objects_become_text(self) -> None:
        """A value JSON cannot carry is sent as its text, not dropped."""
        self.assertEqual(unwire_value(wire_value(ValueError("boom"))), "boom")
