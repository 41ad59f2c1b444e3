"""Certificates in memory (``txcaddy.tls.certificates``): parsing, the cache's lookups, the loaders."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.errors import ConfigError
from txcaddy.tls.certificates import (
    Certificate,
    CertificateCache,
    CertificateError,
    load_certificates,
)

from ._certs import TestCA


class CertificateTests(SynchronousTestCase):
    def test_names_from_sans(self) -> None:
        """The names are the DNS and IP SANs, lower-case; the CN counts only without SANs."""
        ca = TestCA()
        certificate = ca.certificate_for(["WWW.Example.com", "127.0.0.1"], common_name="ignored")
        self.assertEqual(certificate.names, ("www.example.com", "127.0.0.1"))
        only_cn = ca.certificate_for([], common_name="Legacy.Example")
        self.assertEqual(only_cn.names, ("legacy.example",))

    def test_key_must_match(self) -> None:
        """A key that is not the certificate's is refused."""
        ca = TestCA()
        cert_pem, _ = ca.leaf(["a.test"])
        _, other_key = ca.leaf(["b.test"])
        error = self.assertRaises(CertificateError, Certificate.from_pem, cert_pem, other_key)
        self.assertIn("does not match", str(error))

    def test_garbage_refused(self) -> None:
        """Data without a certificate or a key is refused with a CertificateError."""
        cert_pem, key_pem = TestCA().leaf(["a.test"])
        self.assertRaises(CertificateError, Certificate.from_pem, b"nonsense", key_pem)
        self.assertRaises(CertificateError, Certificate.from_pem, cert_pem, b"nonsense")

    def test_renewal_window(self) -> None:
        """In the window once less than the ratio of the lifetime is left."""
        certificate = TestCA().certificate_for(["a.test"], days=90)
        start = certificate.not_before
        self.assertFalse(certificate.in_renewal_window(start + 59 * 86400))
        self.assertTrue(certificate.in_renewal_window(start + 61 * 86400))
        self.assertFalse(certificate.expired(start + 89 * 86400))
        self.assertTrue(certificate.expired(start + 91 * 86400))


class CacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = TestCA()
        self.cache = CertificateCache()

    def test_exact_then_wildcards_from_the_left(self) -> None:
        """``a.b.c`` finds ``a.b.c``, else ``*.b.c``, else ``*.*.c``."""
        exact = self.cache.add(self.ca.certificate_for(["a.b.example"]))
        one = self.cache.add(self.ca.certificate_for(["*.b.example"]))
        two = self.cache.add(self.ca.certificate_for(["*.*.example"]))
        self.assertIs(self.cache.matching("A.b.example"), exact)
        self.assertIs(self.cache.matching("x.b.example"), one)
        self.assertIs(self.cache.matching("x.y.example"), two)
        self.assertIsNone(self.cache.matching("example"))
        self.assertEqual({c.hash for c in self.cache.all_matching("a.b.example")}, {exact.hash, one.hash, two.hash})

    def test_latest_expiry_wins_and_replace(self) -> None:
        """Of two for a name the one expiring last is served; ``replace`` swaps without a gap."""
        short = self.cache.add(self.ca.certificate_for(["a.test"], days=10))
        long = self.cache.add(self.ca.certificate_for(["a.test"], days=80))
        self.assertIs(self.cache.matching("a.test"), long)
        newer = self.ca.certificate_for(["a.test"], days=90)
        self.cache.replace(long, newer)
        self.assertIs(self.cache.matching("a.test"), newer)
        self.assertEqual(len(self.cache), 2)
        self.cache.remove(short)
        self.cache.remove(newer)
        self.assertIsNone(self.cache.matching("a.test"))

    def test_same_chain_once(self) -> None:
        """Adding a chain already cached keeps one entry and merges its tags."""
        cert_pem, key_pem = self.ca.leaf(["a.test"])
        first = self.cache.add(Certificate.from_pem(cert_pem, key_pem, tags=["x"]))
        again = self.cache.add(Certificate.from_pem(cert_pem, key_pem, tags=["y"]))
        self.assertIs(first, again)
        self.assertEqual((len(self.cache), first.tags), (1, ("x", "y")))

    def test_selection(self) -> None:
        """A selection predicate narrows the candidates (certificate_selection)."""
        cert_pem, key_pem = self.ca.leaf(["a.test"])
        tagged = self.cache.add(Certificate.from_pem(cert_pem, key_pem, tags=["cert0"]))
        self.cache.add(self.ca.certificate_for(["a.test"], days=200))
        self.assertIs(self.cache.matching("a.test", lambda c: "cert0" in c.tags), tagged)


class LoaderTests(SynchronousTestCase):
    def write(self, data: bytes) -> str:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_load_files_pem_and_folders(self) -> None:
        """``load_files`` (with tags), ``load_pem`` and ``.pem`` bundles in ``load_folders`` load."""
        ca = TestCA()
        cert_pem, key_pem = ca.leaf(["files.test"])
        inline_cert, inline_key = ca.leaf(["inline.test"])
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "sub"))
        bundle_cert, bundle_key = ca.leaf(["folder.test"])
        with open(os.path.join(folder, "sub", "site.pem"), "wb") as f:
            f.write(bundle_cert + bundle_key)
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("not a certificate")
        loaded = load_certificates({
            "load_files": [{"certificate": self.write(cert_pem), "key": self.write(key_pem), "tags": ["t"]}],
            "load_pem": [{"certificate": inline_cert.decode(), "key": inline_key.decode()}],
            "load_folders": [folder],
        })
        self.assertEqual([c.names for c in loaded], [("files.test",), ("inline.test",), ("folder.test",)])
        self.assertEqual(loaded[0].tags, ("t",))

    def test_errors_name_the_file(self) -> None:
        """A missing file, a key that does not match, a bad folder: ConfigErrors naming them."""
        ca = TestCA()
        cert_pem, _ = ca.leaf(["a.test"])
        _, other_key = ca.leaf(["b.test"])
        missing = os.path.abspath(self.mktemp())
        error = self.assertRaises(ConfigError, load_certificates,
                                  {"load_files": [{"certificate": missing, "key": missing}]})
        self.assertIn(missing, str(error))
        cert_path, key_path = self.write(cert_pem), self.write(other_key)
        error = self.assertRaises(ConfigError, load_certificates,
                                  {"load_files": [{"certificate": cert_path, "key": key_path}]})
        self.assertIn(cert_path, str(error))
        self.assertIn("does not match", str(error))
        self.assertRaises(ConfigError, load_certificates, {"load_folders": [missing]})
        self.assertRaises(ConfigError, load_certificates, {"load_storage": {"pairs": []}})
