"""The Sprig functions Caddy's templates have, with Sprig 3.2's argument order and results."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._gotemplate import ExecError, Template
from txcaddy._gotemplate.sprig import FUNCS


def run(text: str, data: Any = None) -> str:
    return Template("t").funcs(FUNCS).parse(text).execute(data)


class SprigTests(SynchronousTestCase):
    """Each group of functions, as Caddy 2.6.2 prints them."""

    def test_strings(self) -> None:
        """Case, trimming, searching, cutting and quoting."""
        self.assertEqual(run('{{ upper "héllo" }} {{ title "hello wide world" }} {{ trimAll "$" "$$5$" }} {{ trimSuffix "bc" "abc" }}'),
                         "HÉLLO Hello Wide World 5 a")
        self.assertEqual(run('{{ substr 1 3 "hello" }} {{ trunc -2 "hello" }} {{ abbrev 5 "hello world" }} {{ nospace "a b\\tc" }}'),
                         "el lo he... abc")
        self.assertEqual(run('{{ quote "a\\"b" 1 }} {{ squote "x" }} {{ cat "a" 1 nil "b" }} {{ indent 2 "a\\nb" }}'),
                         '"a\\"b" "1" \'x\' a 1 b   a\n  b')

    def test_lists_and_dicts(self) -> None:
        """List and dict helpers; ``slice`` is Sprig's, for lists only."""
        self.assertEqual(run('{{ $d := dict "b" 2 "a" 1 }}{{ get $d "a" }} {{ keys $d | sortAlpha }} {{ hasKey $d "b" }} {{ $d }}'),
                         "1 [a b] true map[a:1 b:2]")
        self.assertEqual(run("{{ first (list 1 2) }} {{ rest (list 1 2 3) }} {{ uniq (list 1 1 2) }} {{ without (list 1 2 3) 2 }} {{ slice (list 1 2 3) 1 }}"),
                         "1 [2 3] [1 2] [1 3] [2 3]")
        self.assertRaisesRegex(ExecError, "list should be type of slice or array but string", run, '{{ slice "abc" 1 }}')

    def test_defaults(self) -> None:
        """``default``, ``empty``, ``coalesce``, ``ternary``."""
        self.assertEqual(run('{{ default "d" "" }} {{ "" | default "p" }} {{ empty 0 }} {{ coalesce "" 0 "x" }} {{ ternary "y" "n" false }}'),
                         "d p true x n")

    def test_math(self) -> None:
        """Integer arithmetic truncates toward zero as Go's; division by zero fails."""
        self.assertEqual(run('{{ add 1 2 "3" }} {{ sub 1 4 }} {{ mul 2 3 }} {{ div -7 2 }} {{ mod -7 3 }} {{ max 1 5 }} {{ min 4 2 }}'),
                         "6 -3 6 -3 -1 5 2")
        self.assertRaisesRegex(ExecError, "integer divide by zero", run, "{{ div 1 0 }}")

    def test_encodings_and_hashes(self) -> None:
        """Base64, JSON as Go marshals it (HTML escaped, keys sorted), hashes."""
        self.assertEqual(run('{{ b64enc "hi" }} {{ b64dec "aGk=" }} {{ toJson (dict "b" 1 "a" "<") }} {{ (fromJson "{\\"x\\":[1,2.5]}").x }}'),
                         'aGk= hi {"a":"\\u003c","b":1} [1 2.5]')
        self.assertEqual(run('{{ sha256sum "abc" }}'), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")

    def test_regexp(self) -> None:
        """RE2 syntax and Go's ``$1`` expansion."""
        self.assertEqual(run('{{ regexMatch "^[a-z]+\\\\d$" "abc1" }} {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }} {{ regexFindAll "[0-9]+" "a1b22" -1 }}'),
                         "true -W-xxW- [1 22]")

    def test_dates(self) -> None:
        """``date`` takes a Go layout (this machine's zone), ``dateInZone`` UTC."""
        self.assertEqual(run('{{ dateInZone "2006-01-02 15:04:05 Mon Jan" 1700000000 "UTC" }}'), "2023-11-14 22:13:20 Tue Nov")
        self.assertRegex(run('{{ now | date "2006" }}'), r"^20\d\d$")


class TimeParameterTests(SynchronousTestCase):
    """Functions that take a Go ``time.Time`` refuse a number, as Go does."""

    def test_time_functions(self) -> None:
        """``unixEpoch`` wants a ``time.Time``: a constant is Go's ``can't handle`` error."""
        self.assertRegex(run('{{ now | htmlDate }} {{ unixEpoch now }} {{ ago now }} {{ duration "61" }} {{ duration 61 }}'),
                         r"^20\d\d-\d\d-\d\d \d{10} 0s 1m1s 0s$")
        self.assertEqual(run("{{ htmlDate 1700000000 }}"), "2023-11-14")
        self.assertRaisesRegex(ExecError, r"at <1700000000>: can't handle 1700000000 for arg of type time.Time",
                               run, "{{ unixEpoch 1700000000 }}")
