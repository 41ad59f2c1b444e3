"""The lexer splits text exactly as Caddy 2.6.2 does (spec/caddyfile.md §2)."""

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.lexer import tokenize


def texts(source: str) -> list[tuple[int, str, str]]:
    return [(t.line, t.text, t.quote) for t in tokenize(source, "Caddyfile")]


class LexerTests(SynchronousTestCase):
    def test_words_and_lines(self) -> None:
        """Words split on whitespace, each token carrying its line number."""
        self.assertEqual(
            texts("host:123 {\n\tdir1 a b\n}\n"),
            [(1, "host:123", ""), (1, "{", ""), (2, "dir1", ""), (2, "a", ""), (2, "b", ""), (3, "}", "")],
        )

    def test_comment_only_at_token_start(self) -> None:
        """A # starts a comment only at the start of a token; inside a word it is text."""
        self.assertEqual(texts("a # c d\nfoo#bar"), [(1, "a", ""), (2, "foo#bar", "")])

    def test_double_quotes_keep_other_escapes(self) -> None:
        """In double quotes only an escaped quote is unescaped; other backslashes stay."""
        self.assertEqual(texts(r'"x\\y" "a\"b"'), [(1, r"x\\y", '"'), (1, 'a"b', '"')])

    def test_quoted_token_spans_lines_and_counts_them(self) -> None:
        """A quoted token may span lines; the lines it spans still count."""
        self.assertEqual(texts('"a\nb" c'), [(1, "a\nb", '"'), (2, "c", "")])

    def test_backticks_are_literal(self) -> None:
        """Backtick quotes keep their content literally, backslashes included."""
        self.assertEqual(texts(r'`x\"y` z'), [(1, r"x\"y", "`"), (1, "z", "")])

    def test_backslash_outside_quotes_is_kept(self) -> None:
        """A backslash outside quotes stays in the token."""
        self.assertEqual(texts(r"a\b"), [(1, r"a\b", "")])

    def test_backslash_space_does_not_join(self) -> None:
        """An escaped space outside quotes still splits the token."""
        self.assertEqual(texts("foo\\ bar"), [(1, "foo", ""), (1, "bar", "")])

    def test_line_continuation_keeps_the_line(self) -> None:
        """A backslash at a line's end joins the next line to it; line counting goes on."""
        self.assertEqual(texts("a \\\nb\nc"), [(1, "a", ""), (1, "b", ""), (3, "c", "")])

    def test_empty_quoted_token(self) -> None:
        """An empty quoted string is a token of its own."""
        self.assertEqual(texts('respond "" 204'), [(1, "respond", ""), (1, "", '"'), (1, "204", "")])

    def test_bom_and_crlf(self) -> None:
        """A leading byte-order mark is dropped and CRLF ends a line."""
        self.assertEqual(texts("\ufeffa\r\nb"), [(1, "a", ""), (2, "b", "")])

    def test_heredoc_is_ordinary_text_in_2_6_2(self) -> None:
        """Heredoc markers are ordinary words, as in Caddy 2.6.2 (which has no heredocs)."""
        self.assertEqual([t for _, t, _ in texts("respond <<EOF\nx\nEOF")], ["respond", "<<EOF", "x", "EOF"])

    def test_unterminated_quote_ends_at_eof(self) -> None:
        """An unterminated quote runs to the end of the text."""
        self.assertEqual(texts('"abc'), [(1, "abc", "")])
