"""The adapter's supporting pieces: Go's JSON encoding, Caddy's durations, addresses."""

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.addresses import Address, AddressError, NetworkAddress
from txcaddy.caddyfile.jsonenc import GoMap, ModuleObject, encode
from txcaddy.config.values import parse_caddy_duration


class JSONTests(SynchronousTestCase):
    def test_struct_order_kept_map_keys_sorted(self) -> None:
        """Plain dicts keep their (struct) order; ``GoMap`` keys come out sorted."""
        value = {"b": 1, "a": GoMap(z=1, a=[True, None]), "c": []}
        self.assertEqual(encode(value), '{"b":1,"a":{"a":[true,null],"z":1},"c":[]}')

    def test_module_objects_sort_every_level(self) -> None:
        """Inside a ``ModuleObject`` every object is sorted, at every depth."""
        value = {"z": ModuleObject(handler="h", body={"y": 1, "x": [{"b": 1, "a": 2}]}), "a": {"b": 1, "a": 2}}
        self.assertEqual(
            encode(value), '{"z":{"body":{"x":[{"a":2,"b":1}],"y":1},"handler":"h"},"a":{"b":1,"a":2}}'
        )

    def test_go_escaping(self) -> None:
        """``<``, ``>``, ``&``, U+2028 and control characters are escaped as Go escapes them."""
        self.assertEqual(encode("<a&b>\u2028\x01\n\"é"), '"\\u003ca\\u0026b\\u003e\\u2028\\u0001\\n\\"é"')

    def test_indent_like_json_indent(self) -> None:
        """Indented output matches ``json.MarshalIndent``, empty objects on one line."""
        self.assertEqual(encode({"a": [1], "b": {}}, "\t"), '{\n\t"a": [\n\t\t1\n\t],\n\t"b": {}\n}')

    def test_floats(self) -> None:
        """Floats print as Go's encoder prints float64 (integral ones without a point): Caddy 2.6.2
        adapts ``map`` outputs ``1e-7 0.00001 1e21 -0.0`` to ``1e-7,0.00001,1e+21,-0``."""
        self.assertEqual(encode([1.5, 2.0, 1e21, 1e-7, 0.00001, -0.0]), "[1.5,2,1e+21,1e-7,0.00001,-0]")


class CaddyDurationTests(SynchronousTestCase):
    def test_durations(self) -> None:
        """``caddy.ParseDuration``: Go's durations plus days, in nanoseconds."""
        self.assertEqual(parse_caddy_duration("1.5h"), 5_400_000_000_000)
        self.assertEqual(parse_caddy_duration("1d2h"), 93_600_000_000_000)
        self.assertEqual(parse_caddy_duration("0.5d"), 43_200_000_000_000)
        self.assertEqual(parse_caddy_duration("-1s"), -1_000_000_000)
        self.assertEqual(parse_caddy_duration("2m30s"), 150_000_000_000)
        self.assertEqual(parse_caddy_duration("0"), 0)

    def test_errors(self) -> None:
        """Bad durations fail with Go's ``time`` messages."""
        for bad, message in (("5", 'time: missing unit in duration "5"'), ("5x", 'time: unknown unit "x" in duration "5x"')):
            with self.assertRaises(ValueError) as caught:
                parse_caddy_duration(bad)
            self.assertEqual(str(caught.exception), message)


class AddressTests(SynchronousTestCase):
    def test_site_addresses(self) -> None:
        """Site keys split into scheme, host, port and path; scheme and host are lowered."""
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
        """A port out of range or not a number fails with Caddy's words around Go's."""
        for key, message in (
            (":70000", "port 70000 is out of range"),
            (":x", "invalid port 'x': strconv.Atoi: parsing \"x\": invalid syntax"),
            (":99999999999999999999", "invalid port '99999999999999999999': strconv.Atoi: parsing \"99999999999999999999\": value out of range"),
        ):
            with self.assertRaises(AddressError) as caught:
                Address.parse(key)
            self.assertEqual(str(caught.exception), message)

    def test_network_addresses(self) -> None:
        """Listener addresses keep their network, IPv6 brackets, Unix paths and port ranges."""
        self.assertEqual(str(NetworkAddress.parse(":443")), ":443")
        self.assertEqual(str(NetworkAddress.parse("tcp6/[::1]:80")), "tcp6/[::1]:80")
        self.assertEqual(str(NetworkAddress.parse("unix//run/x.sock")), "unix//run/x.sock")
        self.assertEqual(NetworkAddress.parse("localhost:8000-8010").end_port, 8010)

    def test_bad_network_address(self) -> None:
        """A listener address Go cannot split fails with an ``AddressError`` in Go's words."""
        with self.assertRaises(AddressError) as caught:
            NetworkAddress.parse("a:b:c")
        self.assertEqual(str(caught.exception), "address a:b:c: too many colons in address")
