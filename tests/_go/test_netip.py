"""Go's ``net/netip``: what ``ParseAddr`` and ``ParsePrefix`` accept and their messages."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.netip import ParseAddrError, parse_addr, parse_prefix


class ParseAddrTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """IPv4, IPv6 with ``::``, an embedded IPv4 tail and a zone parse as Go parses them."""
        self.assertEqual(parse_addr("192.168.0.1"), (ipaddress.IPv4Address("192.168.0.1"), ""))
        self.assertEqual(parse_addr("2001:db8::1"), (ipaddress.IPv6Address("2001:db8::1"), ""))
        self.assertEqual(parse_addr("::"), (ipaddress.IPv6Address("::"), ""))
        self.assertEqual(parse_addr("::ffff:1.2.3.4"), (ipaddress.IPv6Address("::ffff:1.2.3.4"), ""))
        self.assertEqual(parse_addr("fe80::1%eth0"), (ipaddress.IPv6Address("fe80::1"), "eth0"))

    def test_go_accepts_what_python_refuses(self) -> None:
        """Go 1.19 takes more than four hex digits in a group while the value fits 16 bits."""
        self.assertEqual(parse_addr("00001::")[0], ipaddress.IPv6Address("1::"))

    def test_messages(self) -> None:
        """Refusals carry Go's ``ParseAddr("…"): reason (at "…")`` text."""
        for text, message in (
            ("1.2.3.04", 'ParseAddr("1.2.3.04"): IPv4 field has octet with leading zero'),
            ("1.2.3.256", 'ParseAddr("1.2.3.256"): IPv4 field has value >255'),
            ("1.2.3", 'ParseAddr("1.2.3"): IPv4 address too short'),
            ("1.2.3.4.5", 'ParseAddr("1.2.3.4.5"): IPv4 address too long'),
            ("1..2.3", 'ParseAddr("1..2.3"): IPv4 field must have at least one digit (at ".2.3")'),
            ("example", 'ParseAddr("example"): unable to parse IP'),
            ("%eth0", 'ParseAddr("%eth0"): missing IPv6 address'),
            ("1::2::3", 'ParseAddr("1::2::3"): multiple :: in address (at ":3")'),
            ("fe80::1%", 'ParseAddr("fe80::1%"): zone must be a non-empty string'),
        ):
            with self.assertRaises(ParseAddrError, msg=text) as caught:
                parse_addr(text)
            self.assertEqual(str(caught.exception), message)


class ParsePrefixTests(SynchronousTestCase):
    def test_host_bits_may_be_set(self) -> None:
        """Go 1.19's ``ParsePrefix`` keeps the prefix of an address with host bits set."""
        self.assertEqual(parse_prefix("127.0.0.1/8"), ipaddress.ip_network("127.0.0.0/8"))
        self.assertEqual(parse_prefix("::1/64"), ipaddress.ip_network("::/64"))
        self.assertEqual(parse_prefix("10.0.0.0/+8"), ipaddress.ip_network("10.0.0.0/8"))  # Atoi takes "+"

    def test_messages(self) -> None:
        """Bad bits, lengths and zones fail with ``netip.ParsePrefix("…"): reason``."""
        for text, reason in (
            ("10.0.0.0/33", "prefix length out of range"),
            ("10.0.0.0/x", 'bad bits after slash: "x"'),
            ("10.0.0.0/99999999999999999999", 'bad bits after slash: "99999999999999999999"'),
            ("fe80::1%eth0/64", "IPv6 zones cannot be present in a prefix"),
            ("10.0.0/8", 'ParseAddr("10.0.0"): IPv4 address too short'),
        ):
            with self.assertRaises(ParseAddrError, msg=text) as caught:
                parse_prefix(text)
            self.assertEqual(str(caught.exception), f'netip.ParsePrefix("{text}"): {reason}')
