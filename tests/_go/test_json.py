"""Go's ``encoding/json``: strings, floats, maps and structs as ``Marshal`` and ``Encoder.Encode``
write them (Go 1.19), and numbers as ``Unmarshal`` into ``any`` holds them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.errors import GoError
from txcaddy._go.json import (
    AnyMap,
    Map,
    UnmarshalTypeError,
    encode_plain,
    encode_string,
    format_float,
    marshal,
    to_any,
)


class EncodeStringTests(SynchronousTestCase):
    def test_escapes(self) -> None:
        """Quotes, backslashes, \\n \\r \\t short; other controls (\\b, \\f too) and U+2028/9 as \\u00XX."""
        self.assertEqual(encode_string('a"\\\n\r\t\b\f\x01\u2028\u2029é'),
                         '"a\\"\\\\\\n\\r\\t\\u0008\\u000c\\u0001\\u2028\\u2029é"')

    def test_html_escaping(self) -> None:
        """``<``, ``>`` and ``&`` are escaped unless HTML escaping is off (``SetEscapeHTML(false)``)."""
        self.assertEqual(encode_string("<a&b>"), '"\\u003ca\\u0026b\\u003e"')
        self.assertEqual(encode_string("<a&b>\u2028", escape_html=False), '"<a&b>\\u2028"')


class FormatFloatTests(SynchronousTestCase):
    def test_f_between_1e_minus_6_and_1e21(self) -> None:
        """From 1e-6 to below 1e21 a float is written without an exponent, integral ones without ``.0``."""
        self.assertEqual(format_float(3.0), "3")
        self.assertEqual(format_float(1e20), "100000000000000000000")
        self.assertEqual(format_float(1e-5), "0.00001")
        self.assertEqual(format_float(1e-6), "0.000001")
        self.assertEqual(format_float(123456789.0), "123456789")
        self.assertEqual(format_float(0.0), "0")
        self.assertEqual(format_float(-0.0), "-0")

    def test_exponent_outside(self) -> None:
        """Below 1e-6 and from 1e21 Go writes an exponent and drops its leading zero (``1e-7``)."""
        self.assertEqual(format_float(1e21), "1e+21")
        self.assertEqual(format_float(1e-7), "1e-7")
        self.assertEqual(format_float(-2.5e-10), "-2.5e-10")
        self.assertEqual(format_float(1.5e300), "1.5e+300")

    def test_nan_and_infinities_fail(self) -> None:
        """NaN and infinities are Go's ``UnsupportedValueError``."""
        for value, text in ((float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf")):
            with self.assertRaises(GoError) as caught:
                format_float(value)
            self.assertEqual(str(caught.exception), f"json: unsupported value: {text}")


class MarshalTests(SynchronousTestCase):
    def test_structs_keep_order_maps_sort(self) -> None:
        """A plain dict keeps its order (a struct); a ``Map`` sorts its keys."""
        self.assertEqual(marshal({"b": 1, "a": Map(d=None, c=[True, 1.5])}), '{"b":1,"a":{"c":[true,1.5],"d":null}}')

    def test_any_map_sorts_every_depth(self) -> None:
        """An ``AnyMap`` (decoded ``map[string]any``) sorts the objects inside it too."""
        self.assertEqual(marshal(AnyMap(z={"b": 1, "a": 2}, y=[])), '{"y":[],"z":{"a":2,"b":1}}')

    def test_indent(self) -> None:
        """``MarshalIndent(v, "", indent)``: one member a line, ``": "`` after keys, empty ones inline."""
        self.assertEqual(marshal({"a": [1, {}], "b": []}, "\t"), '{\n\t"a": [\n\t\t1,\n\t\t{}\n\t],\n\t"b": []\n}')

    def test_marshaler(self) -> None:
        """An object with ``to_json()`` is encoded as what it returns (Go's ``Marshaler``)."""

        class Value:
            def to_json(self) -> object:
                return ["x"]

        self.assertEqual(marshal({"v": Value()}), '{"v":["x"]}')


class EncodePlainTests(SynchronousTestCase):
    def test_compact_html_escaped_with_newline(self) -> None:
        """``Encoder.Encode``: compact, HTML characters and U+2028 escaped, a final newline."""
        self.assertEqual(encode_plain([{"name": "x<y&z>\u2028é", "size": 0, "dir": False}]),
                         '[{"name":"x\\u003cy\\u0026z\\u003e\\u2028é","size":0,"dir":false}]\n'.encode())

    def test_backspace_and_form_feed(self) -> None:
        """``\\b`` and ``\\f`` are written ``\\u0008`` and ``\\u000c`` (Caddy 2.6.2 lists a file so);
        a backslash before ``b`` stays a backslash."""
        self.assertEqual(encode_plain(["a\bb", "\f", "\\b"]), b'["a\\u0008b","\\u000c","\\\\b"]\n')
        self.assertEqual(encode_plain(["\\b<"]), b'["\\\\b\\u003c"]\n')

    def test_same_as_marshal(self) -> None:
        """For values without floats it writes what ``marshal`` writes, plus a newline."""
        value = {"a": ["\x01", "\t\"\\", "<\u2029>", 7, None, True], "b": {"c": "&"}}
        self.assertEqual(encode_plain(value), (marshal(value) + "\n").encode())


class ToAnyTests(SynchronousTestCase):
    def test_numbers_become_float64(self) -> None:
        """Integers become floats at every depth; booleans, null and strings stay."""
        self.assertEqual(to_any({"a": [1, True, None, "s"], "b": {"c": 2**53 + 1}}),
                         {"a": [1.0, True, None, "s"], "b": {"c": 9007199254740992.0}})
        self.assertIs(type(to_any(3)), float)

    def test_out_of_range(self) -> None:
        """A number beyond float64 is Go's ``UnmarshalTypeError``."""
        with self.assertRaises(UnmarshalTypeError) as caught:
            to_any([10**400])
        self.assertEqual(caught.exception.value, f"number {10**400}")
        self.assertTrue(str(caught.exception).endswith(" into Go value of type float64"))
