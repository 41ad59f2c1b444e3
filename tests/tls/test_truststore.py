"""Tests for txcaddy.tls.truststore: the system store and NSS databases as smallstep's
truststore v0.12.0 changes them on Linux, acted out on a pretend machine (tests/tls/_truststore.py)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from tests.tls._certs import TestCA
from tests.tls._truststore import FakeMachine
from txcaddy.tls import truststore
from txcaddy.tls.truststore import TrustStoreError, install, is_installed, uninstall, unique_name


class TrustStoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.machine = FakeMachine(os.path.abspath(self.mktemp()))
        self.machine.use(self)
        self.ca = TestCA("Caddy Local Authority - 2026 ECC Root")
        self.root = self.ca.certificate
        self.pem = self.root.public_bytes(Encoding.PEM)
        self.name = f"Caddy Local Authority - 2026 ECC Root {self.root.serial_number}"
        self.file = os.path.join(self.machine.anchors, self.name.replace(" ", "_") + ".crt")
        self.events: list[dict[str, Any]] = []
        self.patch(truststore, "log", Logger(observer=provider(ILogObserver)(lambda event: self.events.append(event))))

    def install(self, **kwargs: Any) -> list[str]:
        kwargs.setdefault("as_root", True)
        return install(self.root, environ=self.machine.environ, run=self.machine.run, **kwargs)

    def uninstall(self, **kwargs: Any) -> list[str]:
        kwargs.setdefault("as_root", True)
        return uninstall(self.root, environ=self.machine.environ, run=self.machine.run, **kwargs)

    def warnings(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e["log_level"] == LogLevel.warn]


class NameTests(SynchronousTestCase):
    def test_unique_name(self) -> None:
        """The nickname is "<CN> <decimal serial>"; without a CN smallstep's placeholder name."""
        ca = TestCA("My Root")
        self.assertEqual(unique_name(ca.certificate), f"My Root {ca.certificate.serial_number}")
        leaf = x509.load_pem_x509_certificate(ca.leaf(["a.test"])[0])  # an empty subject
        self.assertEqual(unique_name(leaf), f"Truststore Development CA {leaf.serial_number}")

    def test_read_certificate_pem_and_der(self) -> None:
        """Certificate files are read as PEM or as DER, as smallstep's ReadCertificate."""
        ca = TestCA()
        self.assertEqual(truststore.read_certificate(ca.pem), ca.certificate)
        self.assertEqual(truststore.read_certificate(ca.certificate.public_bytes(Encoding.DER)), ca.certificate)
        self.assertRaises(ValueError, truststore.read_certificate, b"nonsense")


class ExportTests(SynchronousTestCase):
    def test_exports(self) -> None:
        """Every name in ``__all__`` exists and the public functions are listed."""
        for name in truststore.__all__:
            self.assertTrue(hasattr(truststore, name), name)
        self.assertTrue({"install", "uninstall", "is_installed", "TrustStoreError"} <= set(truststore.__all__))


class InstallTests(TrustStoreTestCase):
    def test_system_store_as_root(self) -> None:
        """As root: tee writes <CN>_<serial>.crt into the first existing candidate, then its
        update command runs; the bundle then holds the root."""
        self.assertFalse(is_installed(self.root, stores=["system"], environ=self.machine.environ))
        changed = self.install(stores=["system"])
        self.assertEqual(changed, [self.file])
        self.assertEqual(self.machine.names(), [["tee", self.file], ["update-ca-certificates"]])
        self.assertEqual(self.machine.inputs[0], self.pem)
        with open(self.file, "rb") as f:
            self.assertEqual(f.read(), self.pem)
        self.assertTrue(is_installed(self.root, stores=["system"], environ=self.machine.environ))

    def test_system_store_with_sudo(self) -> None:
        """Not root, with sudo: both commands run behind ``sudo --``."""
        self.install(stores=["system"], as_root=False)
        update = os.path.join(self.machine.bin, "update-ca-certificates")
        self.assertEqual(self.machine.commands, [["sudo", "--", "tee", self.file], ["sudo", "--", update]])

    def test_system_store_without_sudo_or_root(self) -> None:
        """Not root and no sudo: a clear error, nothing run, the NSS change already made reported."""
        os.unlink(os.path.join(self.machine.bin, "sudo"))
        database = self.machine.nss_database()
        error = self.assertRaises(TrustStoreError, self.install, as_root=False)
        self.assertIn("needs root: run this as root, install sudo", str(error))
        self.assertEqual(error.changed, [database])
        self.assertFalse(os.path.exists(self.file))

    def test_first_existing_candidate_wins(self) -> None:
        """The first candidate directory that exists is used, with its extension and command."""
        fedora = os.path.join(self.machine.root, "fedora-anchors")
        os.makedirs(fedora)
        self.machine.add_program("update-ca-trust")
        self.install(stores=["system"])
        pem = os.path.join(fedora, self.name.replace(" ", "_") + ".pem")
        self.assertEqual(self.machine.names(), [["tee", pem], ["update-ca-trust", "extract"]])

    def test_candidate_without_command_is_unsupported(self) -> None:
        """A candidate whose command is not on PATH makes the system store unsupported (no later candidate)."""
        os.makedirs(os.path.join(self.machine.root, "fedora-anchors"))
        error = self.assertRaises(TrustStoreError, self.install, stores=["system"])
        self.assertIn("install is not supported on this system", str(error))
        self.assertEqual(self.machine.commands, [])

    def test_no_candidate_is_unsupported(self) -> None:
        """No candidate directory at all: not supported."""
        self.patch(truststore, "SYSTEM_TRUST_CANDIDATES", [])
        self.assertRaises(TrustStoreError, self.install, stores=["system"])

    def test_already_trusted_by_the_system(self) -> None:
        """A root the system roots already hold (Go's bundle or directory) is not installed again."""
        with open(os.path.join(self.machine.cert_dir, "other.pem"), "wb") as f:
            f.write(TestCA().pem + self.pem)
        self.assertEqual(self.install(stores=["system"]), [])
        self.assertEqual(self.machine.commands, [])
        self.assertIn("already trusted by the system", str([e["log_format"] for e in self.events]))

    def test_failing_command(self) -> None:
        """A command exiting non-zero fails with its name, status and output; the update is not run."""
        self.machine.fail["tee"] = (1, b"tee: permission denied\n")
        error = self.assertRaises(TrustStoreError, self.install, stores=["system"])
        self.assertEqual(str(error), "failed to execute tee: exit status 1: tee: permission denied")
        self.assertEqual(len(self.machine.commands), 1)

    def test_command_that_cannot_start(self) -> None:
        """A program that cannot be started is a TrustStoreError, not an OSError."""
        def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
            raise FileNotFoundError(2, "No such file or directory", argv[0])

        error = self.assertRaises(TrustStoreError, install, self.root, stores=["system"], as_root=True,
                                  environ=self.machine.environ, run=run)
        self.assertIn("failed to execute tee: [Errno 2] No such file or directory", str(error))

    def test_nss_databases(self) -> None:
        """Each Firefox profile and ~/.pki/nssdb gets the root with trust C,, under "<CN> <serial>"
        (cert9.db as sql:, cert8.db as dbm:); then each is checked with -V -u L."""
        chromium = self.machine.nss_database()
        firefox = self.machine.nss_database(".mozilla/firefox/abc.default", "dbm")
        os.makedirs(os.path.join(self.machine.home, ".mozilla/firefox/not-a-profile"))
        changed = self.install(stores=["nss"])
        self.assertEqual(changed, [firefox, chromium])
        self.assertEqual(self.machine.nss, {firefox: {self.name: self.pem}, chromium: {self.name: self.pem}})
        names = self.machine.names()
        self.assertEqual([argv[:3] for argv in names], [
            ["certutil", "-V", "-d"],  # the first database lacks it: no need to ask the others
            ["certutil", "-A", "-d"], ["certutil", "-A", "-d"],
            ["certutil", "-V", "-d"], ["certutil", "-V", "-d"],
        ])
        self.assertEqual(names[1][:-1], ["certutil", "-A", "-d", firefox, "-t", "C,,", "-n", self.name, "-i"])
        self.assertEqual(names[2][:-1], ["certutil", "-A", "-d", chromium, "-t", "C,,", "-n", self.name, "-i"])
        self.assertEqual(names[3], ["certutil", "-V", "-d", firefox, "-u", "L", "-n", self.name])
        self.assertFalse(os.path.exists(names[1][-1]), "the temporary PEM file is removed")
        self.assertTrue(is_installed(self.root, stores=["nss"], environ=self.machine.environ, run=self.machine.run))

    def test_nss_already_present(self) -> None:
        """When every database already has the root, nothing is added."""
        database = self.machine.nss_database()
        self.machine.nss[database][self.name] = self.pem
        self.assertEqual(self.install(stores=["nss"]), [])
        self.assertEqual([argv[1] for argv in self.machine.commands], ["-V"])

    def test_nss_add_fails(self) -> None:
        """certutil -A failing leaves the root unverifiable: an error, and the system store is not touched."""
        self.machine.nss_database()
        self.machine.fail["certutil"] = (255, b"SEC_ERROR_BAD_DATABASE")
        error = self.assertRaises(TrustStoreError, self.install)
        self.assertEqual(str(error), "certificate cannot be installed in NSS security databases")
        self.assertFalse(os.path.exists(self.file))
        self.assertIn("SEC_ERROR_BAD_DATABASE", "\n".join(self.warnings()))

    def test_no_certutil_is_a_warning(self) -> None:
        """Without certutil the NSS store is skipped with a warning saying what to install; the system store still is done."""
        os.unlink(os.path.join(self.machine.bin, "certutil"))
        self.machine.nss_database()
        self.assertEqual(self.install(), [self.file])
        self.assertEqual(len(self.warnings()), 1)
        self.assertIn('"certutil" is not available, install "certutil" with "apt install libnss3-tools"',
                      self.warnings()[0])

    def test_no_nss_database_is_a_warning(self) -> None:
        """No NSS database under $HOME: a warning, no certutil call."""
        self.assertEqual(self.install(stores=["nss"]), [])
        self.assertEqual(self.machine.commands, [])
        self.assertIn("no NSS security databases found", self.warnings()[0])

    def test_default_order_nss_then_system(self) -> None:
        """By default both stores are changed: NSS first, then the system store."""
        database = self.machine.nss_database()
        self.assertEqual(self.install(), [database, self.file])
        self.assertEqual([argv[0] for argv in self.machine.names()],
                         ["certutil", "certutil", "certutil", "tee", "update-ca-certificates"])
        self.assertEqual(self.machine.names()[0][1], "-V")
        self.assertTrue(is_installed(self.root, environ=self.machine.environ, run=self.machine.run))


class SelectionTests(TrustStoreTestCase):
    def test_trust_stores_variable(self) -> None:
        """TRUST_STORES=nss changes only the NSS databases."""
        database = self.machine.nss_database()
        self.machine.environ["TRUST_STORES"] = "nss"
        self.assertEqual(self.install(), [database])
        self.assertFalse(os.path.exists(self.file))

    def test_java_and_unknown_names_warned(self) -> None:
        """java (not supported) and unknown names are warned about and skipped; spaces are ignored."""
        self.assertEqual(truststore.selected_stores(None, {"TRUST_STORES": " java, nss ,foo"}), ["nss"])
        self.assertEqual(self.warnings(), [
            "the Java trust store is not supported by txcaddy; skipping it",
            "unknown trust store 'foo' (known: nss, system); skipping it",
        ])

    def test_nothing_selected(self) -> None:
        """TRUST_STORES naming no known store changes nothing and says so."""
        self.machine.environ["TRUST_STORES"] = "java"
        self.assertEqual(self.install(), [])
        self.assertEqual(self.machine.commands, [])
        self.assertIn("no trust store selected", self.warnings()[-1])

    def test_stores_argument_wins(self) -> None:
        """An explicit ``stores`` overrides TRUST_STORES; unset or empty means every store."""
        self.machine.environ["TRUST_STORES"] = "nss"
        self.assertEqual(truststore.selected_stores(["system"], self.machine.environ), ["system"])
        self.assertEqual(truststore.selected_stores(None, {}), ["nss", "system"])
        self.assertEqual(truststore.selected_stores(None, {"TRUST_STORES": ""}), ["nss", "system"])


class UninstallTests(TrustStoreTestCase):
    def test_uninstall_everywhere(self) -> None:
        """Uninstall deletes the nickname where -V finds it, removes the file with rm -f and rebuilds the bundle."""
        first, second = self.machine.nss_database(), self.machine.nss_database(".mozilla/firefox/p")
        self.install()
        del self.machine.nss[second][self.name]  # only in one database now
        self.machine.commands.clear()
        self.assertEqual(self.uninstall(), [first, self.file])
        self.assertEqual(self.machine.names(), [
            ["certutil", "-V", "-d", second, "-u", "L", "-n", self.name],
            ["certutil", "-V", "-d", first, "-u", "L", "-n", self.name],
            ["certutil", "-D", "-d", first, "-n", self.name],
            ["rm", "-f", self.file],
            ["update-ca-certificates"],
        ])
        self.assertEqual(self.machine.nss, {first: {}, second: {}})
        self.assertFalse(os.path.exists(self.file))
        self.assertFalse(is_installed(self.root, environ=self.machine.environ, run=self.machine.run))

    def test_uninstall_with_sudo(self) -> None:
        """Not root: rm and the update command run behind sudo; nothing there is reported as unchanged."""
        self.assertEqual(self.uninstall(stores=["system"], as_root=False), [])
        self.assertEqual(self.machine.commands[0], ["sudo", "--", "rm", "-f", self.file])

    def test_delete_failure(self) -> None:
        """certutil -D failing is an error naming certutil."""
        database = self.machine.nss_database()
        self.machine.nss[database][self.name] = self.pem
        calls = []

        def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
            calls.append(argv)
            status = 1 if "-D" in argv else 0
            return subprocess.CompletedProcess(argv, status, b"", b"busy" if status else b"")

        error = self.assertRaises(TrustStoreError, uninstall, self.root, stores=["nss"],
                                  environ=self.machine.environ, run=run)
        self.assertEqual(str(error), "failed to execute certutil: exit status 1: busy")
        self.assertEqual(len(calls), 2)
