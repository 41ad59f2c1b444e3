"""The ``txcaddy`` command and ``twistd caddy`` options."""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import json
import os
import signal
import sys
from typing import Any

import bcrypt
import treq
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests._child import free_port, spawn_txcaddy
from tests._net import listen_local, port_number
from tests.tls._truststore import FakeMachine
from txcaddy import _quickstart, cli
from txcaddy._systemd import NotifyService
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.errors import ConfigError
from txcaddy.service import CaddyService
from txcaddy.tap import Options, makeService
from txcaddy.tls import truststore

SITE = ":8080 {\n\trespond /hi \"hello\" 200\n}\n"
SITE_JSON = (
    '{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"match":[{"path":["/hi"]}],'
    '"handle":[{"body":"hello","handler":"static_response","status_code":200}]}]}}}}}'
)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.caddyfile = os.path.join(self.dir, "Caddyfile")
        with open(self.caddyfile, "w") as f:
            f.write(SITE)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def test_adapt_prints_caddys_json(self) -> None:
        """adapt prints Caddy's compact JSON for a Caddyfile and exits 0."""
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual((code, out, err), (0, SITE_JSON + "\n", ""))

    def test_adapt_pretty_uses_tabs(self) -> None:
        """adapt --pretty indents the same JSON with tabs, as Caddy does."""
        code, out, _ = self.run_cli("adapt", "--config", self.caddyfile, "--pretty")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith('{\n\t"apps": {\n\t\t"http": {'))
        self.assertEqual(json.loads(out), json.loads(SITE_JSON))

    def test_adapt_json_config_passes_through(self) -> None:
        """adapt of a .json config prints it unchanged."""
        path = os.path.join(self.dir, "caddy.json")
        with open(path, "w") as f:
            f.write(SITE_JSON)
        code, out, _ = self.run_cli("adapt", "--config", path)
        self.assertEqual((code, out), (0, SITE_JSON + "\n"))

    def test_bad_config_is_one_clear_line(self) -> None:
        """A bad Caddyfile exits 1 with one "Error:" line naming file, line and token."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n\trespond {\n\t\tfoo\n\t}\n}\n")
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertEqual(
            err,
            f"Error: parsing caddyfile tokens for 'respond': {self.caddyfile}:2 - Error during "
            "parsing: Wrong argument count or unexpected line ending after 'respond'\n",
        )

    def test_missing_file(self) -> None:
        """A missing config file exits 1 with Go's error naming the file (``open …: no such file or directory``)."""
        code, _, err = self.run_cli("adapt", "--config", os.path.join(self.dir, "nope"))
        self.assertEqual(code, 1)
        self.assertIn("nope: no such file or directory", err)

    def test_warnings_go_to_stderr(self) -> None:
        """Adapting warnings, such as an unformatted Caddyfile, go to stderr."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n  respond ok\n}\n")
        code, out, err = self.run_cli("adapt", "--config", self.caddyfile)
        self.assertEqual(code, 0)
        self.assertIn("Caddyfile:2: Caddyfile input is not formatted", err)

    def test_validate(self) -> None:
        """validate says "Valid configuration", or exits 1 naming an unregistered module."""
        self.assertEqual(self.run_cli("validate", "--config", self.caddyfile)[:2], (0, "Valid configuration\n"))
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as f:
            f.write('{"apps":{"http":{"servers":{"s":{"listen":[":1"],"routes":[{"handle":[{"handler":"nope"}]}]}}}}}')
        code, _, err = self.run_cli("validate", "--config", path)
        self.assertEqual(code, 1)
        self.assertIn("module not registered: http.handlers.nope", err)

    def test_fmt(self) -> None:
        """fmt prints the formatted Caddyfile; --overwrite writes it back to the file."""
        with open(self.caddyfile, "w") as f:
            f.write(":8080 {\n    respond   ok\n}")
        code, out, _ = self.run_cli("fmt", self.caddyfile)
        self.assertEqual((code, out), (0, ":8080 {\n\trespond ok\n}\n"))
        self.run_cli("fmt", "--overwrite", self.caddyfile)
        with open(self.caddyfile) as f:
            self.assertEqual(f.read(), ":8080 {\n\trespond ok\n}\n")


class TwistdOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_caddyfile_is_adapted(self) -> None:
        """twistd caddy -c adapts a Caddyfile into a CaddyService with its listeners."""
        options = Options()
        options.parseOptions(["-c", self.write("Caddyfile", SITE)])
        service = makeService(options)
        assert isinstance(service, CaddyService), service
        self.assertEqual(service.listenAddresses(), {"srv0": [":8080"]})

    def test_json_by_adapter_flag(self) -> None:
        """--adapter json loads the file as JSON config."""
        options = Options()
        options.parseOptions(["-c", self.write("conf", SITE_JSON), "--adapter", "json"])
        service = makeService(options)
        assert isinstance(service, CaddyService), service
        self.assertEqual(service.config, json.loads(SITE_JSON))

    def test_bad_config_is_one_error_line(self) -> None:
        """A bad Caddyfile prints "Error: file:line: problem" alone and exits 1 (no usage text)."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        path = self.write("Caddyfile", ":8080 {\n\tnope\n}\n")
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["-c", path])
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(stderr.getvalue(), f"Error: {path}:2: unrecognized directive: nope\n")

    def test_unknown_adapter(self) -> None:
        """An unknown --adapter is an error naming it, exit 1."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["-c", self.write("x", SITE), "--adapter", "yaml"])
        self.assertEqual(caught.exception.code, 1)
        self.assertIn("Error: unrecognized config adapter 'yaml'", stderr.getvalue())

    def test_wrong_option_is_still_a_usage_error(self) -> None:
        """A wrong command line (not a wrong config) is still twistd's usage error."""
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--nope"])

    def test_notifier_under_systemd(self) -> None:
        """Under systemd ($NOTIFY_SOCKET) the service's last child tells READY=1/STOPPING=1."""
        self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": "/run/nothing"})
        options = Options()
        options.parseOptions(["-c", self.write("Caddyfile", SITE)])
        service = makeService(options)
        assert isinstance(service, CaddyService), service
        self.assertIsInstance(list(service)[-1], NotifyService)

    def test_plugin_is_discoverable(self) -> None:
        """twistd finds the caddy service maker through Twisted's plugin system."""
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        names = {p.tapname for p in getPlugins(IServiceMaker)}
        self.assertIn("caddy", names)


class TrustCommandTests(SynchronousTestCase):
    """``txcaddy trust`` / ``untrust`` on a pretend machine (tests/tls/_truststore.py): the CA
    comes from a temporary storage, the root goes into a temporary ``$HOME``'s NSS database."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.machine = FakeMachine(os.path.join(self.dir, "machine"))
        self.machine.use(self)
        self.patch(cli, "run_trust_command", self.machine.run)
        self.database = self.machine.nss_database()
        self.data = os.path.join(self.dir, "data")
        self.set_environ(**self.machine.environ, TRUST_STORES="nss", XDG_DATA_HOME=self.data)
        self.storage = os.path.join(self.dir, "storage")
        self.caddyfile = os.path.join(self.dir, "Caddyfile")
        with open(self.caddyfile, "w") as f:
            f.write(f"{{\n\tskip_install_trust\n\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n}}\n"
                    "localhost {\n\trespond hi\n}\n")

    def set_environ(self, **values: str) -> None:
        """Set environment variables for this test only."""
        for name, value in values.items():
            self.addCleanup(_restore_environ, name, os.environ.get(name))
            os.environ[name] = value

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def root(self, storage: str) -> x509.Certificate:
        with open(os.path.join(storage, "pki", "authorities", "local", "root.crt"), "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def trusted(self) -> dict[str, bytes]:
        """The nicknames in the NSS database, with their PEM."""
        return self.machine.nss[self.database]

    def test_trust_default_storage(self) -> None:
        """Without --config the default storage's ``local`` CA is made (as the server would)
        and its root lands in the NSS database as "<CN> <serial>"."""
        code, out, err = self.run_cli("trust")
        self.assertEqual((code, out), (0, ""))
        root = self.root(os.path.join(self.data, "caddy"))
        self.assertEqual(self.trusted(), {truststore.unique_name(root): root.public_bytes(Encoding.PEM)})
        self.assertIn("INFO\tgenerated root certificate for CA local", err)
        self.assertIn("INFO\tinstalling root certificate of CA local (you might be prompted for password) "
                      "(path: storage:pki/authorities/local/root.crt)", err)
        self.assertIn("INFO\tcertificate installed properly in NSS security databases", err)

    def test_trust_config_storage_reuses_the_ca(self) -> None:
        """With --config the config's storage is used; an existing CA is loaded, not replaced,
        and ``skip_install_trust`` (about server start) does not stop the command."""
        self.assertEqual(self.run_cli("trust", "--config", self.caddyfile)[0], 0)
        first = self.root(self.storage)
        self.machine.nss[self.database].clear()
        code, _, err = self.run_cli("trust", "--config", self.caddyfile, "--adapter", "caddyfile")
        self.assertEqual(code, 0)
        self.assertEqual(self.root(self.storage), first)
        self.assertNotIn("generated", err)
        self.assertEqual(list(self.trusted()), [truststore.unique_name(first)])
        self.assertFalse(os.path.exists(self.data), "the default storage is not touched")

    def test_trust_other_ca(self) -> None:
        """--ca picks a CA configured in the JSON config's pki app."""
        path = os.path.join(self.dir, "caddy.json")
        with open(path, "w") as f:
            json.dump({"storage": {"module": "file_system", "root": self.storage},
                       "apps": {"pki": {"certificate_authorities": {"corp": {"name": "Corp CA"}}}}}, f)
        self.assertEqual(self.run_cli("trust", "--ca", "corp", "--config", path)[0], 0)
        with open(os.path.join(self.storage, "pki", "authorities", "corp", "root.crt"), "rb") as f:
            root = x509.load_pem_x509_certificate(f.read())
        self.assertTrue(truststore.unique_name(root).startswith("Corp CA - "))
        self.assertEqual(list(self.trusted()), [truststore.unique_name(root)])

    def test_trust_errors(self) -> None:
        """An unknown CA, or --adapter without --config, exits 1 with one Error line and installs nothing."""
        code, _, err = self.run_cli("trust", "--ca", "nope", "--config", self.caddyfile)
        self.assertEqual((code, err.splitlines()[-1]), (1, "Error: no certificate authority configured with id: nope"))
        code, _, err = self.run_cli("trust", "--adapter", "caddyfile")
        self.assertEqual((code, err), (1, "Error: cannot adapt config without config file (use --config)\n"))
        self.assertEqual(self.trusted(), {})

    def test_trust_store_failure(self) -> None:
        """A trust store that cannot be changed exits 1 with the store's error."""
        self.set_environ(TRUST_STORES="system")
        self.patch(truststore, "SYSTEM_TRUST_CANDIDATES", [])
        code, _, err = self.run_cli("trust", "--config", self.caddyfile)
        self.assertEqual(code, 1)
        self.assertTrue(err.splitlines()[-1].startswith("Error: install is not supported on this system"), err)

    def test_untrust_from_storage(self) -> None:
        """untrust removes the CA's root from the NSS database and leaves the storage alone."""
        self.run_cli("trust", "--config", self.caddyfile)
        self.assertEqual(len(self.trusted()), 1)
        code, out, err = self.run_cli("untrust", "--config", self.caddyfile)
        self.assertEqual((code, out), (0, ""))
        self.assertEqual(self.trusted(), {})
        self.assertIn("uninstalled properly from NSS security databases", err)
        self.assertTrue(os.path.exists(os.path.join(self.storage, "pki", "authorities", "local", "root.key")))

    def test_untrust_without_ca_makes_none(self) -> None:
        """untrust with no CA in storage exits 1 and does not create one."""
        code, _, err = self.run_cli("untrust", "--config", self.caddyfile)
        self.assertEqual(code, 1)
        self.assertEqual(err, "Error: no root certificate for CA 'local' in storage "
                              "(pki/authorities/local/root.crt): nothing to untrust\n")
        self.assertFalse(os.path.exists(self.storage))

    def test_untrust_cert_file(self) -> None:
        """untrust --cert removes the certificate in that file (PEM or DER)."""
        self.run_cli("trust", "--config", self.caddyfile)
        der = os.path.join(self.dir, "root.der")
        with open(der, "wb") as f:
            f.write(self.root(self.storage).public_bytes(Encoding.DER))
        self.assertEqual(self.run_cli("untrust", "--cert", der)[0], 0)
        self.assertEqual(self.trusted(), {})

    def test_untrust_cert_errors(self) -> None:
        """--cert with other flags, a missing file, or a failing store: exit 1 with Caddy's messages."""
        missing = os.path.join(self.dir, "missing.crt")
        self.assertEqual(self.run_cli("untrust", "--cert", missing, "--ca", "local")[1:],
                         ("", "Error: conflicting command line arguments, cannot use --cert with other flags\n"))
        code, _, err = self.run_cli("untrust", "--cert", missing)
        self.assertEqual((code, err), (1, f"Error: accessing certificate file: stat {missing}: no such file or directory\n"))
        self.run_cli("trust", "--config", self.caddyfile)
        self.machine.fail["certutil -D"] = (1, b"database locked")
        code, _, err = self.run_cli("untrust", "--cert", os.path.join(self.storage, "pki", "authorities", "local", "root.crt"))
        self.assertEqual((code, err.splitlines()[-1]), (
            1, "Error: failed to uninstall certificate file: failed to execute certutil: exit status 1: database locked"))
        self.assertEqual(len(self.trusted()), 1)

def _restore_environ(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class ConfigDiscoveryTests(SynchronousTestCase):
    """run/validate without --config, as Caddy's LoadConfig (facts §9)."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()

    def test_no_config_and_no_caddyfile_is_empty(self) -> None:
        """Without --config and without ./Caddyfile the config is empty (and valid)."""
        self.assertEqual(cli.discover_config("", None), ({}, []))
        self.assertEqual(self.run_cli("validate"), (0, "Valid configuration\n", ""))

    def test_adjacent_caddyfile_is_used(self) -> None:
        """Without --config, ./Caddyfile is adapted (its errors name it)."""
        with open("Caddyfile", "w") as f:
            f.write(":8080 {\n\tnope\n}\n")
        self.assertEqual(self.run_cli("validate"), (1, "", "Error: Caddyfile:2: unrecognized directive: nope\n"))
        with open("Caddyfile", "w") as f:
            f.write(SITE)
        self.assertEqual(encode(cli.discover_config("", None)[0]), SITE_JSON)

    def test_config_from_stdin(self) -> None:
        """--config - reads the config from stdin: JSON, or a Caddyfile with --adapter caddyfile."""
        self.patch(sys, "stdin", io.StringIO(SITE_JSON))
        self.assertEqual(cli.discover_config("-", None), (json.loads(SITE_JSON), []))
        self.patch(sys, "stdin", io.StringIO(SITE))
        self.assertEqual(encode(cli.discover_config("-", "caddyfile")[0]), SITE_JSON)
        self.patch(sys, "stdin", io.StringIO(SITE))
        self.assertEqual(self.run_cli("validate", "--config", "-")[0::2],
                         (1, "Error: -:1 - invalid JSON config: Expecting value\n"))

    def test_adapter_needs_config(self) -> None:
        """--adapter without --config is Caddy's error."""
        self.assertEqual(
            self.run_cli("validate", "--adapter", "caddyfile"),
            (1, "", "Error: cannot adapt config without config file (use --config)\n"),
        )


class InfoCommandTests(SynchronousTestCase):
    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()

    def test_list_modules(self) -> None:
        """list-modules prints the module IDs, then Caddy's three counts."""
        code, out, _ = self.run_cli("list-modules")
        lines = out.splitlines()
        self.assertEqual(code, 0)
        for module_id in ("http", "http.handlers.reverse_proxy", "http.matchers.host", "tls.issuance.acme"):
            self.assertIn(module_id, lines)
        standard = lines.index("")
        self.assertEqual(lines[standard + 1], f"  Standard modules: {standard}")
        self.assertEqual(lines[standard + 2:], ["", "  Non-standard modules: 0", "", "  Unknown modules: 0"])
        self.assertEqual(lines[:standard], sorted(lines[:standard]))

    def test_list_modules_versions_and_packages(self) -> None:
        """--versions and --packages add the version and the Python package to each line."""
        _, out, _ = self.run_cli("list-modules", "--versions", "--packages")
        self.assertIn(f"http {cli.VERSION} txcaddy", out.splitlines())
        self.assertIn("http.handlers.file_server", out)

    def test_list_modules_skip_standard(self) -> None:
        """--skip-standard leaves out txcaddy's own modules and their count."""
        _, out, _ = self.run_cli("list-modules", "--skip-standard")
        self.assertEqual(out, "\n  Non-standard modules: 0\n\n  Unknown modules: 0\n")

    def test_environ(self) -> None:
        """environ prints Caddy's keys, the working directory, a blank line, then the environment."""
        self.patch(os, "environ", {"HOME": "/home/u", "XDG_DATA_HOME": "", "TXCADDY_TEST": "1"})
        code, out, _ = self.run_cli("environ")
        lines = out.splitlines()
        self.assertEqual(code, 0)
        self.assertEqual(lines[:5], [
            "caddy.HomeDir=/home/u",
            "caddy.AppDataDir=/home/u/.local/share/caddy",
            "caddy.AppConfigDir=/home/u/.config/caddy",
            "caddy.ConfigAutosavePath=/home/u/.config/caddy/autosave.json",
            f"caddy.Version={cli.VERSION}",
        ])
        self.assertEqual(lines[11:], [f"os.Getwd={os.getcwd()}", "", "HOME=/home/u", "XDG_DATA_HOME=", "TXCADDY_TEST=1"])


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class HashPasswordTests(SynchronousTestCase):
    def run_cli(self, *argv: str, stdin: Any = None) -> tuple[int, str, str]:
        if stdin is not None:
            self.patch(sys, "stdin", stdin)
        out, err = io.StringIO(), io.StringIO()
        return cli.main(list(argv), out, err), out.getvalue(), err.getvalue()

    def test_bcrypt_plaintext(self) -> None:
        """--plaintext hashes with bcrypt cost 14, written $2a$ as Go writes it; the hash verifies."""
        code, out, err = self.run_cli("hash-password", "--plaintext", "hiccup")
        hashed = out.strip()
        self.assertEqual((code, err, out[-1]), (0, "", "\n"))
        self.assertTrue(hashed.startswith("$2a$14$"), hashed)
        self.assertEqual(len(hashed), 60)
        self.assertTrue(bcrypt.checkpw(b"hiccup", hashed.encode()))
        self.assertFalse(bcrypt.checkpw(b"hiccuP", hashed.encode()))

    def test_stdin_line(self) -> None:
        """Without a TTY one line of stdin is the password, its newline dropped."""
        stdin = io.TextIOWrapper(io.BytesIO(b"s3cret\nignored\n"))
        code, out, _ = self.run_cli("hash-password", stdin=stdin)
        self.assertEqual(code, 0)
        self.assertTrue(bcrypt.checkpw(b"s3cret", out.strip().encode()))

    def test_stdin_errors(self) -> None:
        """No newline on stdin is Go's EOF error; an empty line is "plaintext is required"."""
        eof = io.TextIOWrapper(io.BytesIO(b"s3cret"))
        self.assertEqual(self.run_cli("hash-password", stdin=eof), (1, "", "Error: EOF\n"))
        empty = io.TextIOWrapper(io.BytesIO(b"\n"))
        self.assertEqual(self.run_cli("hash-password", stdin=empty), (1, "", "Error: plaintext is required\n"))

    def test_tty_prompts_twice(self) -> None:
        """On a TTY it asks "Enter password:" then "Confirm password:"; different answers are an error."""
        prompts: list[str] = []
        answers = iter(["one", "two"])

        def fake_getpass(prompt: str = "", stream: Any = None) -> str:
            prompts.append(prompt)
            return next(answers)

        self.patch(getpass, "getpass", fake_getpass)
        code, out, err = self.run_cli("hash-password", stdin=_TTY())
        self.assertEqual(prompts, ["Enter password: ", "Confirm password: "])
        self.assertEqual((code, out, err), (1, "", "Error: password does not match\n"))

    def test_scrypt(self) -> None:
        """scrypt (deprecated) prints the base64 of the N=32768 r=8 p=1 32-byte key for the salt."""
        code, out, _ = self.run_cli("hash-password", "--algorithm", "scrypt", "--salt", "pepper", "--plaintext", "pw")
        key = hashlib.scrypt(b"pw", salt=b"pepper", n=32768, r=8, p=1, maxmem=64 << 20, dklen=32)
        self.assertEqual((code, out), (0, base64.b64encode(key).decode() + "\n"))
        self.assertEqual(len(out.strip()), 44)

    def test_unknown_algorithm(self) -> None:
        """An unknown --algorithm is Caddy's error, exit 1."""
        code, _, err = self.run_cli("hash-password", "--algorithm", "md5", "--plaintext", "x")
        self.assertEqual((code, err), (1, "Error: unrecognized hash algorithm: md5\n"))


class QuickstartConfigTests(SynchronousTestCase):
    """The configs of the one-line servers, as Caddy 2.6.2's commands build them."""

    def test_reverse_proxy_to_a_domain(self) -> None:
        """--from a domain: HTTPS on :443 with a host matcher; --change-host-header sets Host."""
        plan = _quickstart.reverse_proxy_config("example.com", ["localhost:9000"], change_host_header=True)
        self.assertEqual((plan.source, plan.upstreams), ("https://example.com", ["localhost:9000"]))
        self.assertEqual(plan.config, {
            "admin": {"disabled": True, "config": {"persist": False}},
            "apps": {"http": {"servers": {"proxy": {"listen": [":443"], "routes": [{
                "match": [{"host": ["example.com"]}],
                "handle": [{
                    "handler": "reverse_proxy", "transport": {"protocol": "http"},
                    "upstreams": [{"dial": "localhost:9000"}],
                    "headers": {"request": {"set": {"Host": ["{http.reverse_proxy.upstream.hostport}"]}}},
                }],
            }]}}}},
        })

    def test_reverse_proxy_port_only_and_https_upstream(self) -> None:
        """--from :PORT is plain HTTP with no matcher; an https:// upstream gets TLS (--insecure skips verify)."""
        plan = _quickstart.reverse_proxy_config(
            ":8080", ["https://a.example", "b.example:8443"], insecure=True, debug=True)
        self.assertEqual(plan.source, "http://:8080")
        self.assertEqual(plan.upstreams, ["a.example:443", "b.example:8443"])
        self.assertEqual(plan.config["logging"], {"logs": {"default": {"level": "DEBUG"}}})
        server = plan.config["apps"]["http"]["servers"]["proxy"]
        self.assertEqual(server["listen"], [":8080"])
        self.assertNotIn("match", server["routes"][0])
        self.assertEqual(server["routes"][0]["handle"][0]["transport"],
                         {"protocol": "http", "tls": {"insecure_skip_verify": True}})

    def test_reverse_proxy_internal_certs(self) -> None:
        """--internal-certs makes an automation policy with the internal issuer for the host."""
        plan = _quickstart.reverse_proxy_config("a.test", ["127.0.0.1:1"], internal_certs=True)
        self.assertEqual(plan.config["apps"]["tls"], {
            "automation": {"policies": [{"subjects": ["a.test"], "issuers": [{"module": "internal"}]}]}})

    def test_reverse_proxy_errors(self) -> None:
        """No --to, a path in --from, a bad upstream: Caddy's messages, exit 1."""
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.main(["reverse-proxy", "--from", ":1"], out, err), 1)
        self.assertEqual(err.getvalue(), "Error: --to is required\n")
        with self.assertRaises(ConfigError) as caught:
            _quickstart.reverse_proxy_config("a.test/x", ["b:1"])
        self.assertEqual(str(caught.exception), "paths are not allowed: a.test/x")
        with self.assertRaises(ConfigError) as caught:
            _quickstart.reverse_proxy_config(":1", ["http://b:443"])
        self.assertEqual(str(caught.exception), "invalid upstream address http://b:443: upstream address has "
                         "conflicting scheme (http://) and port (:443, the HTTPS port)")

    def test_file_server(self) -> None:
        """file-server: :80 by default (:443 with --domain), Caddy's timeouts and header limit."""
        config, listen = _quickstart.file_server_config(root="/srv", browse=True, access_log=True)
        self.assertEqual(listen, ":80")
        self.assertEqual(config["apps"]["http"]["servers"]["static"], {
            "listen": [":80"], "read_header_timeout": 10_000_000_000, "idle_timeout": 30_000_000_000,
            "max_header_bytes": 10240,
            "routes": [{"handle": [{"handler": "file_server", "root": "/srv", "browse": {}}]}], "logs": {},
        })
        config, listen = _quickstart.file_server_config(domain="a.test", templates=True)
        route = config["apps"]["http"]["servers"]["static"]["routes"][0]
        self.assertEqual((listen, route["match"]), (":443", [{"host": ["a.test"]}]))
        self.assertEqual(route["handle"], [{"handler": "templates"}, {"handler": "file_server"}])
        service = CaddyService(_quickstart.file_server_config(listen="127.0.0.1:0")[0])
        self.assertEqual(service.listenAddresses(), {"static": ["127.0.0.1:0"]})


class _Echo(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"upstream saw Host " + (request.getHeader(b"host") or b"")


class OneLineServerTests(TestCase):
    """reverse-proxy and file-server as real child processes, stopped by their pid."""

    @inlineCallbacks
    def test_file_server_serves_the_root(self) -> Any:
        """file-server --root --listen serves the directory and says so on stderr; SIGTERM ends it with 0."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        with open(os.path.join(root, "hello.txt"), "w") as f:
            f.write("hello from disk")
        port = free_port()
        child, process = spawn_txcaddy(self, ["file-server", "--root", root, "--listen", f"127.0.0.1:{port}"])
        yield child.wait_for(f"Caddy serving static files on 127.0.0.1:{port}\n")
        response = yield treq.get(f"http://127.0.0.1:{port}/hello.txt", persistent=False)
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (200, b"hello from disk"))
        os.kill(process.pid, signal.SIGTERM)
        status = yield child.ended
        self.assertEqual(status, 0)

    @inlineCallbacks
    def test_reverse_proxy_forwards(self) -> Any:
        """reverse-proxy --from :PORT --to UPSTREAM prints Caddy's line and proxies, Host changed on request."""
        upstream = listen_local(Site(_Echo()))
        self.addCleanup(upstream.stopListening)
        to = f"127.0.0.1:{port_number(upstream)}"
        port = free_port()
        child, process = spawn_txcaddy(
            self, ["reverse-proxy", "--from", f":{port}", "--to", to, "--change-host-header"])
        yield child.wait_for(f"Caddy proxying http://:{port} -> {to}\n")
        response = yield treq.get(f"http://127.0.0.1:{port}/", persistent=False)
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (200, f"upstream saw Host {to}".encode()))
        os.kill(process.pid, signal.SIGTERM)
        status = yield child.ended
        self.assertEqual(status, 0)


class RespondConfigTests(SynchronousTestCase):
    """``respond``'s config, as Caddy 2.6.2's cmdRespond builds it."""

    def handler(self, config: dict[str, Any], server: str = "static0") -> Any:
        return config["apps"]["http"]["servers"][server]["routes"][0]["handle"][0]

    def test_defaults(self) -> None:
        """No arguments: an empty 200 on :0, Caddy's timeouts, no redirects."""
        config = _quickstart.respond_config()
        self.assertEqual(config["apps"]["http"]["servers"], {"static0": {
            "listen": [":0"], "read_header_timeout": 10_000_000_000, "idle_timeout": 30_000_000_000,
            "max_header_bytes": 10240,
            "routes": [{"handle": [{"handler": "static_response", "status_code": "200"}]}],
            "automatic_https": {"disable_redirects": True},
        }})

    def test_argument_is_status_or_body(self) -> None:
        """A 3-digit argument is the status, other text the body; --status makes a number the body."""
        self.assertEqual(self.handler(_quickstart.respond_config(argument="404"))["status_code"], "404")
        self.assertEqual(self.handler(_quickstart.respond_config(argument="hello"))["body"], "hello")
        handler = self.handler(_quickstart.respond_config(status=200, argument="404"))
        self.assertEqual((handler["status_code"], handler["body"]), ("200", "404"))
        self.assertNotIn("body", self.handler(_quickstart.respond_config(argument="42")))  # not 3 digits: ignored
        self.assertEqual(self.handler(_quickstart.respond_config(stdin_body="piped"))["body"], "piped")

    def test_port_range_and_template(self) -> None:
        """A port range makes one server per port; {{.N}}, {{.Port}}, {{.Address}} are filled in."""
        config = _quickstart.respond_config("127.0.0.1:9000-9001", body="{{.N}} {{ .Port }} {{.Address}}")
        self.assertEqual(self.handler(config, "static1")["body"], "1 9001 127.0.0.1:9001")
        self.assertEqual(config["apps"]["http"]["servers"]["static0"]["listen"], ["127.0.0.1:9000"])

    def test_headers_and_errors(self) -> None:
        """--header sets canonical fields; a bad header, an overridden argument, an unknown template action fail."""
        handler = self.handler(_quickstart.respond_config(headers=["x-one: 1", "Cache-Control : no-store"]))
        self.assertEqual(handler["headers"], {"X-One": ["1"], "Cache-Control": ["no-store"]})
        for kwargs, message in [
            ({"headers": ["ok: 1", "nocolon"]}, 'header 1: invalid format "nocolon" (expecting "Field: value")'),
            ({"status": 201, "body": "b", "argument": "x"}, 'unflagged argument "x" is overridden by flags'),
            ({"body": "{{.Host}}"}, "template: body: txcaddy supports only {{.N}}, {{.Port}} and {{.Address}}, "
                                    "not {{.Host}}"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                _quickstart.respond_config(**kwargs)  # type: ignore[arg-type]
            self.assertEqual(str(caught.exception), message)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(cli.main(["respond", "a", "b"], out, err), 1)
        self.assertEqual(err.getvalue(), "Error: too many unflagged arguments\n")


class RespondProcessTests(TestCase):
    @inlineCallbacks
    def test_respond_with_piped_body(self) -> Any:
        """respond reads its body from a pipe on stdin, prints "Server address: …", and answers with it."""
        port = free_port()
        child, process = spawn_txcaddy(self, ["respond", "--listen", f"127.0.0.1:{port}", "201"])
        process.write(b"from the pipe on {{.Port}}")
        process.closeStdin()
        yield child.wait_for(f"Server address: 127.0.0.1:{port}\n")
        response = yield treq.get(f"http://127.0.0.1:{port}/", persistent=False)
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (201, f"from the pipe on {port}".encode()))
        os.kill(process.pid, signal.SIGTERM)
        status = yield child.ended
        self.assertEqual(status, 0)


class StartStopTests(TestCase):
    """``txcaddy start`` returns once the server listens; ``txcaddy stop`` ends it (admin API)."""

    timeout = 90

    @inlineCallbacks
    def test_start_then_stop(self) -> Any:
        """start prints Caddy's line with the server's pid and exits 0 while the server keeps
        serving; stop posts /stop to the admin address and the server process ends."""
        import select

        site, admin = free_port(), free_port()
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write(f"{{\n\tadmin 127.0.0.1:{admin}\n}}\nhttp://127.0.0.1:{site} {{\n\trespond \"started\"\n}}\n")
        env = {"XDG_DATA_HOME": os.path.abspath(self.mktemp()), "XDG_CONFIG_HOME": os.path.abspath(self.mktemp())}
        starter, _ = spawn_txcaddy(self, ["start", "--config", config], env=env)
        # The server inherits start's output (as Caddy's): start's pipes stay open after it exits.
        yield starter.wait_for("is running in the background")
        line = [text for text in starter.text().splitlines() if text.startswith("Successfully started txcaddy")]
        self.assertEqual(len(line), 1, starter.text())
        pid = int(line[0].split("pid=")[1].split(")")[0])
        server = os.pidfd_open(pid)
        self.addCleanup(os.close, server)

        def kill_if_running() -> None:
            if not select.select([server], [], [], 0)[0]:
                os.kill(pid, signal.SIGTERM)

        self.addCleanup(kill_if_running)
        response = yield treq.get(f"http://127.0.0.1:{site}/", persistent=False)
        self.assertEqual((yield response.content()), b"started")
        stopper, _ = spawn_txcaddy(self, ["stop", "--address", f"127.0.0.1:{admin}"], env=env)
        self.assertEqual((yield stopper.ended), 0, stopper.text())
        ended, _, _ = select.select([server], [], [], 30)  # bounded wait for the server's exit
        self.assertEqual(ended, [server])
        self.assertEqual((yield starter.ended), 0, starter.text())

    def test_start_reports_a_server_that_fails(self) -> None:
        """A config that cannot start makes start fail with Caddy's message and exit 1."""
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write("http://127.0.0.1:1 {\n\tnot_a_directive\n}\n")
        err = io.StringIO()
        self.assertEqual(cli.main(["start", "--config", config], io.StringIO(), err), 1)
        self.assertIn("Error: caddy process exited with error: exit status 1", err.getvalue())
