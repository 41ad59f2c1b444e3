"""Go-compatible helpers: JSON encoding, number/duration parsing, stable sort, addresses."""

import random

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile._goparse import parse_caddy_duration, parse_go_float, parse_go_int
from txcaddy.caddyfile._gosort import slice_stable
from txcaddy.caddyfile.addresses import Address, AddressError, NetworkAddress, split_host_port
from txcaddy.caddyfile.jsonenc import GoMap, ModuleObject, encode


class JSONTests(SynchronousTestCase):
    def test_struct_order_kept_map_keys_sorted(self) -> None:
        value = {"b": 1, "a": GoMap(z=1, a=[True, None]), "c": []}
        self.assertEqual(encode(value), '{"b":1,"a":{"a":[true,null],"z":1},"c":[]}')

    def test_module_objects_sort_every_level(self) -> None:
        value = {"z": ModuleObject(handler="h", body={"y": 1, "x": [{"b": 1, "a": 2}]}), "a": {"b": 1, "a": 2}}
        self.assertEqual(
            encode(value), '{"z":{"body":{"x":[{"a":2,"b":1}],"y":1},"handler":"h"},"a":{"b":1,"a":2}}'
        )

    def test_go_escaping(self) -> None:
        self.assertEqual(encode("<a&b>\u2028\x01\n\"é"), '"\\u003ca\\u0026b\\u003e\\u2028\\u0001\\n\\"é"')

    def test_indent_like_json_indent(self) -> None:
        self.assertEqual(encode({"a": [1], "b": {}}, "\t"), '{\n\t"a": [\n\t\t1\n\t],\n\t"b": {}\n}')

    def test_floats(self) -> None:
        self.assertEqual(encode([1.5, 2.0, 1e21, 1e-7]), "[1.5,2,1e+21,1e-07]")


class GoParseTests(SynchronousTestCase):
    def test_durations(self) -> None:
        self.assertEqual(parse_caddy_duration("1.5h"), 5_400_000_000_000)
        self.assertEqual(parse_caddy_duration("1d2h"), 93_600_000_000_000)
        self.assertEqual(parse_caddy_duration("-1s"), -1_000_000_000)
        self.assertEqual(parse_caddy_duration("2m30s"), 150_000_000_000)
        self.assertEqual(parse_caddy_duration("0"), 0)
        for bad, message in (("5", 'time: missing unit in duration "5"'), ("5x", 'time: unknown unit "x" in duration "5x"')):
            with self.assertRaises(ValueError) as caught:
                parse_caddy_duration(bad)
            self.assertEqual(str(caught.exception), message)

    def test_numbers(self) -> None:
        self.assertEqual(parse_go_int("-12"), -12)
        self.assertIsNone(parse_go_int("1.0"))
        self.assertEqual(parse_go_float("1e3"), 1000.0)
        self.assertIsNone(parse_go_float("abc"))


class StableSortTests(SynchronousTestCase):
    def test_matches_a_stable_sort_for_transitive_orders(self) -> None:
        rng = random.Random(7)
        for _ in range(100):
            items = [(rng.randint(0, 4), i) for i in range(rng.randint(0, 90))]
            ordered = list(items)
            slice_stable(ordered, lambda a, b: a[0] < b[0])
            self.assertEqual(ordered, sorted(items, key=lambda a: a[0]))


class AddressTests(SynchronousTestCase):
    def test_site_addresses(self) -> None:
        cases = {
            "example.com": ("", "example.com", "", ""),
            "HTTP://Example.COM:8080/Foo": ("http", "example.com", "8080", "/Foo"),
            "[::1]:8443": ("", "::1", "8443", ""),
            ":80": ("", "", "80", ""),
            "https://": ("https", "", "", ""),
            "{$X}.{host}": ("", "{$X}.{host}", "", ""),
        }
        for key, expected in cases.items():
            a = Address.parse(key).normalize()
            self.assertEqual((a.scheme, a.host, a.port, a.path), expected, key)

    def test_bad_ports(self) -> None:
        for key, message in ((":70000", "port 70000 is out of range"), (":x", "invalid port 'x': strconv.Atoi: parsing \"x\": invalid syntax")):
            with self.assertRaises(AddressError) as caught:
                Address.parse(key)
            self.assertEqual(str(caught.exception), message)

    def test_split_host_port(self) -> None:
        self.assertEqual(split_host_port("[::1]:80"), ("::1", "80"))
        with self.assertRaises(AddressError):
            split_host_port("a:b:c")

    def test_network_addresses(self) -> None:
        self.assertEqual(str(NetworkAddress.parse(":443")), ":443")
        self.assertEqual(str(NetworkAddress.parse("tcp6/[::1]:80")), "tcp6/[::1]:80")
        self.assertEqual(str(NetworkAddress.parse("unix//run/x.sock")), "unix//run/x.sock")
        self.assertEqual(NetworkAddress.parse("localhost:8000-8010").end_port, 8010)
