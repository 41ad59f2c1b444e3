"""Go's ``strconv``: what ``Atoi``, ``ParseFloat`` and ``ParseBool`` accept, how ``Quote`` and
``FormatFloat`` print, and the words of ``NumError``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import (
    NumError,
    atoi,
    format_float_e,
    format_float_f,
    format_float_g,
    format_int,
    parse_bool,
    parse_float,
    parse_uint,
    quote,
)


class AtoiTests(SynchronousTestCase):
    def test_signs_and_zero(self) -> None:
        """A leading ``+`` or ``-`` is accepted, ``-0`` is zero and leading zeros are digits."""
        self.assertEqual(atoi("+1"), 1)
        self.assertEqual(atoi("+12"), 12)
        self.assertEqual(atoi("-12"), -12)
        self.assertEqual(atoi("-0"), 0)
        self.assertEqual(atoi("007"), 7)

    def test_int64_range(self) -> None:
        """The 64-bit bounds parse; one past them is ``value out of range``."""
        self.assertEqual(atoi("9223372036854775807"), 2**63 - 1)
        self.assertEqual(atoi("-9223372036854775808"), -(2**63))
        for text in ("9223372036854775808", "-9223372036854775809", "9" * 20):
            with self.assertRaises(NumError) as caught:
                atoi(text)
            self.assertEqual(str(caught.exception), f'strconv.Atoi: parsing "{text}": value out of range')

    def test_invalid_syntax(self) -> None:
        """Empty text, a bare sign, spaces, underscores, decimals and non-ASCII digits fail."""
        for text in ("", "+", "-", " 1", "1 ", "1_000", "1.5", "0x10", "١", "+-1"):
            with self.assertRaises(NumError) as caught:
                atoi(text)
            self.assertEqual(str(caught.exception), f"strconv.Atoi: parsing {quote(text)}: invalid syntax")

    def test_error_is_a_go_error(self) -> None:
        """``NumError`` is a ``GoError`` and a ``ValueError``, so callers may catch either."""
        with self.assertRaises(GoError):
            atoi("x")
        with self.assertRaises(ValueError):
            atoi("x")

    def test_error_fields(self) -> None:
        """The error keeps Go's ``Func``, ``Num`` and ``Err`` for callers that reword it."""
        with self.assertRaises(NumError) as caught:
            atoi("a\tb")
        error = caught.exception
        self.assertEqual((error.func, error.num, error.reason), ("Atoi", "a\tb", "invalid syntax"))
        self.assertEqual(str(error), 'strconv.Atoi: parsing "a\\tb": invalid syntax')


class ParseTests(SynchronousTestCase):
    def test_parse_float(self) -> None:
        """Decimal and exponent forms parse; words and overflow fail with Go's reasons."""
        self.assertEqual(parse_float("1e3"), 1000.0)
        self.assertEqual(parse_float("-1.5"), -1.5)
        self.assertEqual(parse_float("+Inf"), float("inf"))
        with self.assertRaises(NumError) as caught:
            parse_float("abc")
        self.assertEqual(str(caught.exception), 'strconv.ParseFloat: parsing "abc": invalid syntax')
        with self.assertRaises(NumError) as caught:
            parse_float("1e400")
        self.assertEqual(str(caught.exception), 'strconv.ParseFloat: parsing "1e400": value out of range')

    def test_parse_float_grammar(self) -> None:
        """Go's grammar: hexadecimal floats parse; underscores, spaces and doubled signs do not."""
        self.assertEqual(parse_float("0x1p-2"), 0.25)
        self.assertEqual(parse_float(".5"), 0.5)
        self.assertEqual(parse_float("1."), 1.0)
        self.assertEqual(parse_float("-Infinity"), float("-inf"))
        for text in ("1_000", " 0.5", "0.5x", "++inf", "+nan", "", ".", "e5"):
            with self.assertRaises(NumError, msg=text):
                parse_float(text)

    def test_parse_float32(self) -> None:
        """With 32 bits the value is rounded to float32 and float32's range applies."""
        self.assertEqual(parse_float("0.5", 32), 0.5)
        self.assertEqual(parse_float("1e0", 32), 1.0)
        self.assertEqual(parse_float("0.1", 32), 0.10000000149011612)
        self.assertEqual(parse_float("1e38", 64), 1e38)
        for text in ("1e39", "0x1p200"):
            with self.assertRaises(NumError) as caught:
                parse_float(text, 32)
            self.assertEqual(caught.exception.reason, "value out of range", text)

    def test_parse_bool(self) -> None:
        """Go's twelve spellings parse; anything else is invalid syntax."""
        self.assertEqual([parse_bool(t) for t in ("1", "t", "TRUE", "True")], [True] * 4)
        self.assertEqual([parse_bool(t) for t in ("0", "f", "FALSE", "False")], [False] * 4)
        with self.assertRaises(NumError) as caught:
            parse_bool("yes")
        self.assertEqual(str(caught.exception), 'strconv.ParseBool: parsing "yes": invalid syntax')


class QuoteTests(SynchronousTestCase):
    def test_quote(self) -> None:
        """Quotes and backslashes are escaped, control characters get Go's named or hex escapes."""
        self.assertEqual(quote('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(quote("\a\b\f\n\r\t\v"), '"\\a\\b\\f\\n\\r\\t\\v"')
        self.assertEqual(quote("\x01\x7f"), '"\\x01\\x7f"')
        self.assertEqual(quote("é☺"), '"é☺"')
        self.assertEqual(quote("\u00a0\U000e0001"), '"\\u00a0\\U000e0001"')

    def test_invalid_utf8_is_hex(self) -> None:
        """An invalid UTF-8 byte (a surrogate escape here) is written ``\\xNN``, as Go does."""
        self.assertEqual(quote("a\udcffb"), '"a\\xffb"')


class FormatFloatTests(SynchronousTestCase):
    def test_format_f(self) -> None:
        """``FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
        self.assertEqual(format_float_f(-0.5), "-0.5")
        self.assertEqual(format_float_f(3.0), "3")
        self.assertEqual(format_float_f(1e21), "1000000000000000000000")
        self.assertEqual(format_float_f(1e-7), "0.0000001")
        self.assertEqual(format_float_f(float("nan")), "NaN")

    def test_format_g(self) -> None:
        """``%v``: an exponent below 1e-04 and from 1e+06, two exponent digits at least."""
        self.assertEqual(format_float_g(float("-inf")), "-Inf")
        self.assertEqual(format_float_g(1.5e300), "1.5e+300")
        self.assertEqual(format_float_g(0.0001), "0.0001")
        self.assertEqual(format_float_g(0.00001), "1e-05")
        self.assertEqual(format_float_g(123456.0), "123456")
        self.assertEqual(format_float_g(1e6), "1e+06")

    def test_format_e(self) -> None:
        """``FormatFloat(v, 'e', -1, 64)``: one digit before the point, two exponent digits at least."""
        self.assertEqual(format_float_e(0.0), "0e+00")
        self.assertEqual(format_float_e(-0.0), "-0e+00")
        self.assertEqual(format_float_e(123.5), "1.235e+02")
        self.assertEqual(format_float_e(1e-7), "1e-07")
        self.assertEqual(format_float_e(5e-324), "5e-324")
        self.assertEqual(format_float_e(float("inf")), "+Inf")

    def test_edges(self) -> None:
        """Where Python's ``repr`` switches to an exponent (1e-5, 1e16) the ``'f'`` form does not;
        ``'g'`` switches at 1e-4 and 1e6."""
        cases = [(0.0, "0", "0"), (-0.0, "-0", "-0"), (1e-5, "0.00001", "1e-05"),
                 (1e16, "10000000000000000", "1e+16"), (1e20, "100000000000000000000", "1e+20"),
                 (123456789.0, "123456789", "1.23456789e+08"), (-2.5e-7, "-0.00000025", "-2.5e-07"),
                 (999999.0, "999999", "999999"), (float("-inf"), "-Inf", "-Inf")]
        for value, f, g in cases:
            self.assertEqual((format_float_f(value), format_float_g(value)), (f, g), value)


class ParseUintTests(SynchronousTestCase):
    def test_digits_and_range(self) -> None:
        """Decimal digits only, up to the bit size's maximum; no sign, no empty text."""
        self.assertEqual(parse_uint("65535", 16), 65535)
        self.assertEqual(parse_uint("0018446744073709551615"), 2**64 - 1)
        for text in ("", "+1", "-1", "1_000", "٣", " 1"):
            with self.assertRaises(NumError) as caught:
                parse_uint(text, 16)
            self.assertEqual(str(caught.exception), f"strconv.ParseUint: parsing {quote(text)}: invalid syntax")

    def test_range_before_syntax(self) -> None:
        """Digits past the range fail as out of range even when a bad character follows them."""
        for text in ("65536", "70000x"):
            with self.assertRaises(NumError) as caught:
                parse_uint(text, 16)
            self.assertEqual(caught.exception.reason, "value out of range")
        with self.assertRaises(NumError) as caught:
            parse_uint("6553x6", 16)
        self.assertEqual(caught.exception.reason, "invalid syntax")


class FormatIntTests(SynchronousTestCase):
    def test_bases(self) -> None:
        """``FormatInt``: lower-case digits in the base, zero as ``0``, negatives with ``-``."""
        self.assertEqual(format_int(0, 36), "0")
        self.assertEqual(format_int(1700000000, 36), "s44we8")
        self.assertEqual(format_int(35, 36), "z")
        self.assertEqual(format_int(-255, 16), "-ff")
        self.assertEqual(format_int(5, 2), "101")
