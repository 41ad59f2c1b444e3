"""The ``txcaddy`` command and ``twistd caddy`` options."""

from __future__ import annotations

import io
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.tls._truststore import FakeMachine
from txcaddy import cli
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

    def test_bad_config_is_a_usage_error(self) -> None:
        """A bad Caddyfile is a UsageError naming file, line and problem."""
        options = Options()
        path = self.write("Caddyfile", ":8080 {\n\tnope\n}\n")
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["-c", path])
        self.assertEqual(str(caught.exception), f"{path}:2: unrecognized directive: nope")

    def test_unknown_adapter(self) -> None:
        """An unknown --adapter is a UsageError naming it."""
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["-c", self.write("x", SITE), "--adapter", "yaml"])
        self.assertIn("unrecognized config adapter 'yaml'", str(caught.exception))

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
