"""Go's ``net``: ``SplitHostPort``'s results and errors, ``JoinHostPort`` and ``ParseIP``."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.errors import GoError
from txcaddy._go.net import AddrError, join_host_port, parse_ip, split_host_port


class SplitHostPortTests(SynchronousTestCase):
    def test_splits(self) -> None:
        """Host and port split at the last colon; brackets around an IPv6 host are removed."""
        self.assertEqual(split_host_port("a:1"), ("a", "1"))
        self.assertEqual(split_host_port("[::1]:80"), ("::1", "80"))
        self.assertEqual(split_host_port("[::1]:1"), ("::1", "1"))
        self.assertEqual(split_host_port("a:"), ("a", ""))
        self.assertEqual(split_host_port(":80"), ("", "80"))
        self.assertEqual(split_host_port("[fe80::1%eth0]:443"), ("fe80::1%eth0", "443"))
        self.assertEqual(split_host_port("a:b"), ("a", "b"))  # the port is not checked

    def test_errors(self) -> None:
        """Each malformed form fails with Go's reason after ``address <text>:``."""
        for text, reason in (
            ("a", "missing port in address"),
            ("[::1]", "missing port in address"),
            ("[::1]x:1", "missing port in address"),
            ("::1", "too many colons in address"),
            ("a:b:c", "too many colons in address"),
            ("[::1]::1", "too many colons in address"),
            ("[::1:80", "missing ']' in address"),
            ("a[:80", "unexpected '[' in address"),
            ("a]:1", "unexpected ']' in address"),
        ):
            with self.assertRaises(AddrError, msg=text) as caught:
                split_host_port(text)
            self.assertEqual(str(caught.exception), f"address {text}: {reason}")

    def test_empty_address(self) -> None:
        """Go's ``AddrError`` leaves out the ``address`` prefix when the address is empty."""
        with self.assertRaises(AddrError) as caught:
            split_host_port("")
        self.assertEqual(str(caught.exception), "missing port in address")

    def test_error_is_a_go_error(self) -> None:
        """``AddrError`` is a ``GoError`` (a ``ValueError``), as callers catch it."""
        with self.assertRaises(GoError):
            split_host_port("a")


class JoinHostPortTests(SynchronousTestCase):
    def test_join(self) -> None:
        """A host with a colon gets brackets; the port may be given as a number."""
        self.assertEqual(join_host_port("a", "80"), "a:80")
        self.assertEqual(join_host_port("::1", "80"), "[::1]:80")
        self.assertEqual(join_host_port("10.0.0.1", 53), "10.0.0.1:53")
        self.assertEqual(join_host_port("", "80"), ":80")

    def test_round_trip(self) -> None:
        """``SplitHostPort(JoinHostPort(h, p))`` gives ``h`` and ``p`` back."""
        for host in ("a", "::1", "", "fe80::1%eth0"):
            self.assertEqual(split_host_port(join_host_port(host, "1")), (host, "1"))


class ParseIPTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """IPv4 and IPv6 parse; an IPv4-mapped IPv6 address comes back as IPv4 (``To4``)."""
        self.assertEqual(parse_ip("1.2.3.4"), ipaddress.IPv4Address("1.2.3.4"))
        self.assertEqual(parse_ip("::1"), ipaddress.IPv6Address("::1"))
        self.assertEqual(parse_ip("::ffff:1.2.3.4"), ipaddress.IPv4Address("1.2.3.4"))

    def test_refused(self) -> None:
        """Zones, leading zeros, host names and empty text are not IPs."""
        for text in ("fe80::1%eth0", "01.2.3.4", "example.com", "", "1.2.3", "[::1]"):
            self.assertIsNone(parse_ip(text), text)
