"""Go's ``regexp``: RE2 syntax on Python's ``re`` and ``ReplaceAllString``'s templates."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.regexp import RegexpError, compile_regexp, replace_all_string, translate


class RegexpTests(SynchronousTestCase):
    """Go's RE2 syntax on Python's re; every verdict here was checked with ``caddy validate``."""

    def search(self, pattern: str, text: str) -> str | None:
        found = compile_regexp(pattern).search(text)
        return None if found is None else found.group(0)

    def test_dollar_is_end_of_text(self) -> None:
        """``$`` and ``\\z`` end the text (no match before a final newline) unless ``(?m)``."""
        self.assertEqual(self.search("^/admin$", "/admin"), "/admin")
        self.assertIsNone(self.search("^/admin$", "/admin\n"))
        self.assertIsNone(self.search("^/admin\\z", "/admin\n"))
        self.assertEqual(self.search("(?m)^/x$", "/x\n"), "/x")

    def test_perl_classes_are_ascii(self) -> None:
        """``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII-only, as in RE2."""
        self.assertEqual(self.search("^/\\w+$", "/a_1"), "/a_1")
        self.assertIsNone(self.search("^/\\w+$", "/café"))
        self.assertIsNone(self.search("\\d", "٣"))
        self.assertEqual(self.search("^/[^\\D]+$", "/123"), "/123")
        self.assertIsNone(self.search("\\s", "\x0b"))  # Go's \s has no vertical tab
        self.assertEqual(self.search("\\bfoo\\b", "/a foo"), "foo")
        self.assertEqual(self.search("\\bfoo\\b", "éfooé"), "foo")  # é is not a word character in Go

    def test_flags_anywhere(self) -> None:
        """Flags may appear mid-pattern and last until their group closes, past ``|``."""
        self.assertEqual(self.search("^/a(?i)B(?-i)c", "/abc"), "/abc")
        self.assertIsNone(self.search("^/a(?i)B(?-i)c", "/abC"))
        self.assertEqual(self.search("a(?i)b|c", "C"), "C")  # the flag lasts past the |
        self.assertEqual(self.search("(?s)^/a.c$", "/a\nc"), "/a\nc")
        self.assertIsNone(self.search("^/a.c$", "/a\nc"))

    def test_ungreedy_flag(self) -> None:
        """``(?U)`` swaps greedy and lazy repetition."""
        self.assertEqual(self.search("(?U)a+", "aaa"), "a")
        self.assertEqual(self.search("(?U)a+?", "aaa"), "aaa")
        self.assertEqual(self.search("(?U:a+)a*", "aaa"), "aaa")

    def test_literal_braces_and_escapes(self) -> None:
        """A ``{`` that starts no repetition is literal; ``\\Q…\\E``, hex and octal escapes work."""
        self.assertEqual(self.search("x{,3}", "x{,3}"), "x{,3}")
        self.assertEqual(self.search("^/x{2}$", "/xx"), "/xx")
        self.assertEqual(self.search("\\Qa.b\\E", "a.b"), "a.b")
        self.assertIsNone(self.search("\\Qa.b\\E", "axb"))
        self.assertEqual(self.search("^/\\x41\\x{e9}\\101", "/AéA"), "/AéA")

    def test_posix_and_unicode_classes(self) -> None:
        """POSIX classes, Unicode categories and a leading ``]`` in a class work."""
        self.assertEqual(self.search("^/[[:alpha:]]+$", "/abc"), "/abc")
        self.assertEqual(self.search("^/[[:^digit:]]+$", "/abc"), "/abc")
        self.assertEqual(self.search("^/\\pL+$", "/été"), "/été")
        self.assertIsNone(self.search("^/\\p{Lu}", "/été"))
        self.assertEqual(self.search("^/[]a]+$", "/]a"), "/]a")

    def test_named_groups(self) -> None:
        """``(?P<name>…)`` groups keep their names and numbers."""
        compiled = compile_regexp("(?P<name>[a-z]+)-(\\d+)")
        self.assertEqual(compiled.groupindex, {"name": 1})
        match = compiled.search("x abc-12")
        assert match is not None
        self.assertEqual(match.groups(), ("abc", "12"))

    def test_rejected_like_go(self) -> None:
        """Patterns Go's ``regexp.Compile`` refuses raise ``RegexpError``."""
        for pattern in ["a**", "a*+", "a++", "a{2}{3}", "\\1", "(?=x)", "(?!x)", "(?<=x)", "\\Z", "[\\b]", "a{1001}", "(", ")",
                        "[a", "\\q", "(?#c)", "(?P=n)", "x{2,1}", "\\C", "\\p{Foo}", "[[:foo:]]", "\\", "(?i-)x", "(?<n>x)"]:
            with self.assertRaises(RegexpError, msg=pattern):
                compile_regexp(pattern)

    def test_unsupported_forms_say_so(self) -> None:
        """Go forms Python cannot express are refused with a message that says so."""
        with self.assertRaises(RegexpError) as caught:
            compile_regexp("\\p{Greek}")
        self.assertIn("not scripts", str(caught.exception))
        with self.assertRaises(RegexpError) as caught:
            compile_regexp("(?P<1a>x)")
        self.assertIn("not supported by txcaddy", str(caught.exception))

    def test_translation(self) -> None:
        """The Python pattern written for a Go pattern."""
        self.assertEqual(translate("^/a$"), "^/a\\Z")
        self.assertEqual(translate("(?i)x|y"), "(?i:x)|(?i:y)")
        self.assertEqual(translate("a{,2}"), "a\\{,2}")
        self.assertEqual(translate("\\d"), "[0-9]")


class ReplaceAllTests(SynchronousTestCase):
    def test_templates(self) -> None:
        """``$1``, ``${name}`` and ``$$`` expand; a missing group is empty; a bare ``$`` stays."""
        regexp = compile_regexp("(?P<word>[a-z]+)-([0-9]+)")
        self.assertEqual(replace_all_string(regexp, "ab-12 cd-3", "$2:${word}$$"), "12:ab$ 3:cd$")
        self.assertEqual(replace_all_string(regexp, "ab-12", "[$9]"), "[]")
        self.assertEqual(replace_all_string(regexp, "ab-12", "$"), "$")

    def test_empty_match_after_a_match_is_skipped(self) -> None:
        """An empty match right after the previous match is not replaced, as in Go."""
        self.assertEqual(replace_all_string(compile_regexp("a*"), "baaac", "x"), "xbxcx")
