"""Random input never crashes the adapter: it yields a config or a ConfigError."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.lexer import tokenize
from txcaddy.errors import ConfigError

WORDS = st.sampled_from(
    [
        "{", "}", "{}", "\n", "\n", " ", "\t", "\\\n", '"', "`", "#", ",", "*", ":80", "localhost",
        "example.com", "http://a.b:8080", "@m", "@m {", "path", "/api/*", "header", "reverse_proxy",
        "localhost:9000", "to", "lb_policy", "round_robin", "health_uri", "transport", "http",
        "handle", "handle_path", "route", "respond", "redir", "file_server", "root", "try_files",
        "rewrite", "uri", "strip_prefix", "tls", "internal", "log", "bind", "(snip)", "{args.0}",
        "{$HOME}", "{host}", "{>X}", "debug", "servers", "order", "abort", "error", "encode",
        "gzip", "dynamic", "srv", "a", "10s", "-1", "=503", "not", "expression", "{http.x}",
    ]
)
SOURCES = st.one_of(st.lists(WORDS, max_size=40).map(" ".join), st.text(max_size=200))


class RandomInputTests(SynchronousTestCase):
    def setUp(self) -> None:
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        cwd = os.getcwd()
        os.chdir(empty)
        self.addCleanup(os.chdir, cwd)

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(SOURCES)
    def test_adapt_yields_config_or_config_error(self, source: str) -> None:
        """Any text adapts to a config dict or fails with a ConfigError with a message."""
        try:
            config, warnings = adapt(source, "Caddyfile", environ={})
        except ConfigError as e:
            self.assertTrue(str(e))
        else:
            self.assertIsInstance(config, dict)

    @settings(max_examples=400, deadline=None)
    @given(st.text(max_size=300))
    def test_lexer_never_raises(self, source: str) -> None:
        """The lexer takes any text, every token on a line numbered from 1."""
        tokens = tokenize(source, "Caddyfile")
        self.assertTrue(all(t.line >= 1 for t in tokens))
