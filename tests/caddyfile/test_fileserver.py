"""``file_server``'s implicit hiding of the Caddyfile, and the Go path rules behind it."""

from __future__ import annotations

import json
import os
import pathlib

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.caddyfile.directives import fileserver


def adapt(text: str, filename: str) -> tuple[dict, list]:
    """The adapted config as plain JSON data."""
    output, warnings = adapt_to_json(text, filename)
    return json.loads(output), warnings


def first_handler(config: dict) -> dict:
    return config["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]


class FileHiddenTests(SynchronousTestCase):
    def test_file_hidden(self) -> None:
        """file_hidden matches by name, by directory, by absolute cwd and glob; "./x" is not "x"."""
        cwd = os.getcwd()
        self.assertTrue(fileserver.file_hidden("Caddyfile", ["Caddyfile"]))
        self.assertTrue(fileserver.file_hidden("conf/Caddyfile", ["conf"]))
        self.assertTrue(fileserver.file_hidden("Caddyfile", [cwd]))
        self.assertTrue(fileserver.file_hidden("Caddyfile", [cwd + "/*"]))
        # A relative entry with a separator is compared with the absolute path.
        self.assertFalse(fileserver.file_hidden("Caddyfile", ["./Caddyfile"]))
        self.assertFalse(fileserver.file_hidden("Caddyfile", []))


class ImplicitHideTests(SynchronousTestCase):
    def setUp(self) -> None:
        work = pathlib.Path(self.mktemp()).resolve()
        (work / "sub").mkdir(parents=True)
        cwd = os.getcwd()
        os.chdir(work)
        self.addCleanup(os.chdir, cwd)
        self.work = work

    def test_site_caddyfile_is_hidden(self) -> None:
        """file_server in a site from ./Caddyfile hides "./Caddyfile"."""
        config, _ = adapt(":8080 {\n\tfile_server\n}\n", "Caddyfile")
        self.assertEqual(first_handler(config)["hide"], ["./Caddyfile"])

    def test_absolute_name_kept(self) -> None:
        """An absolute Caddyfile name is hidden as given."""
        config, _ = adapt(":8080 {\n\tfile_server\n}\n", "/etc/caddy/Caddyfile")
        self.assertEqual(first_handler(config)["hide"], ["/etc/caddy/Caddyfile"])

    def test_imported_file_is_hidden(self) -> None:
        """The files of the site block's directives count, imported ones included."""
        (self.work / "sub" / "extra.caddy").write_text("file_server\n")
        config, _ = adapt(":8080 {\n\timport sub/extra.caddy\n}\n", "Caddyfile")
        self.assertEqual(first_handler(config)["hide"], [str(self.work / "sub" / "extra.caddy")])

    def test_user_hide_covering_caddyfile_adds_nothing(self) -> None:
        """A hide pattern of the user's that covers the Caddyfile is left alone."""
        config, _ = adapt(":8080 {\n\tfile_server {\n\t\thide *file\n\t}\n}\n", "Caddyfile")
        self.assertEqual(first_handler(config)["hide"], ["*file"])


class TryFilesTests(SynchronousTestCase):
    def test_query_entries_get_their_own_routes(self) -> None:
        """try_files entries with a query get a route each, all in one group."""
        config, _ = adapt(":8080 {\n\ttry_files a b?x=1 c\n}\n", "Caddyfile")
        routes = config["apps"]["http"]["servers"]["srv0"]["routes"]
        self.assertEqual(
            [(r["match"][0]["file"]["try_files"], r["handle"][0]["uri"]) for r in routes],
            [
                (["a"], "{http.matchers.file.relative}"),
                (["b"], "{http.matchers.file.relative}?x=1"),
                (["c"], "{http.matchers.file.relative}"),
            ],
        )
        self.assertEqual(len({r["group"] for r in routes}), 1)
