"""The declarative JSON shapes (``txcaddy.config.schema``) and the whole-config check."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.configschema import check_config
from txcaddy.config.loader import LoadContext
from txcaddy.config.schema import (
    ANY,
    BOOL,
    DURATION,
    INT,
    NUMBER,
    STRING,
    STRINGS,
    ListOf,
    MapOf,
    Module,
    Nullable,
    Obj,
    OneOf,
    check,
)
from txcaddy.config.validate import validate_config
from txcaddy.errors import ConfigError


def _error(spec: Any, value: Any, path: str = "x") -> str:
    try:
        check(spec, value, path)
    except ConfigError as e:
        return str(e)
    raise AssertionError("no ConfigError")


class ScalarTests(SynchronousTestCase):
    def test_string_refuses_number(self) -> None:
        """A number where a string belongs names the path and both types."""
        self.assertEqual(_error(STRING, 5), "json: cannot unmarshal number into x of type string")

    def test_int_refuses_bool_float_and_huge(self) -> None:
        """An int is a JSON integer that fits int64: not a bool, a fraction or 2**63."""
        self.assertEqual(_error(INT, True), "json: cannot unmarshal bool into x of type int")
        self.assertEqual(_error(INT, 1.5), "json: cannot unmarshal number into x of type int")
        self.assertEqual(_error(INT, 2**63), "json: cannot unmarshal number into x of type int")
        check(INT, -(2**63), "x")

    def test_number_takes_int_and_float(self) -> None:
        """A float64 field takes any JSON number but not a string."""
        check(NUMBER, 1, "x")
        check(NUMBER, 0.5, "x")
        self.assertEqual(_error(NUMBER, "1"), "json: cannot unmarshal string into x of type float64")

    def test_bool(self) -> None:
        """A bool field refuses 0 and 1."""
        check(BOOL, False, "x")
        self.assertEqual(_error(BOOL, 0), "json: cannot unmarshal number into x of type bool")

    def test_duration_forms(self) -> None:
        """A caddy.Duration is integer nanoseconds or a duration string; bad strings are errors."""
        check(DURATION, 10, "d")
        check(DURATION, "1m30s", "d")
        check(DURATION, "2d", "d")
        self.assertEqual(_error(DURATION, 1.5, "d"), "json: cannot unmarshal number into d of type caddy.Duration")
        self.assertIn("d: time: ", _error(DURATION, "soon", "d"))

    def test_any_takes_everything(self) -> None:
        """ANY accepts every JSON value, null included."""
        values: list[Any] = [None, 1, "s", [], {}, True]
        check(ListOf(ANY), values, "x")


class ContainerTests(SynchronousTestCase):
    def test_list_item_path(self) -> None:
        """A bad list item is named by its index."""
        self.assertEqual(_error(STRINGS, ["a", 1], "listen"), "json: cannot unmarshal number into listen[1] of type string")

    def test_list_refuses_object(self) -> None:
        """An object where a list belongs names the Go slice type."""
        self.assertEqual(_error(STRINGS, {}, "l"), "json: cannot unmarshal object into l of type []string")

    def test_null_items_refused_unless_nullable(self) -> None:
        """A null list item is an error, but where the item is Nullable."""
        self.assertEqual(_error(STRINGS, [None], "l"), "json: cannot unmarshal null into l[0] of type string")
        check(MapOf(Nullable(STRINGS)), {"X": None}, "h")

    def test_map_value_path(self) -> None:
        """A bad map value is named by its key."""
        self.assertEqual(
            _error(MapOf(INT), {"a": 1, "b": "2"}, "m"), "json: cannot unmarshal string into m.b of type int"
        )

    def test_object_fields_and_null_fields(self) -> None:
        """Known fields are checked; a null field is dropped (Go's zero value), unknown ones pass."""
        spec = Obj({"a": INT, "b": STRING})
        value = {"a": 1, "b": None, "other": [1]}
        check(spec, value, "o")
        self.assertEqual(value, {"a": 1, "other": [1]})
        self.assertEqual(_error(spec, {"a": "1"}, "o"), "json: cannot unmarshal string into o.a of type int")

    def test_strict_object_refuses_unknown_field(self) -> None:
        """A strict object refuses fields it does not declare, as Caddy's strict decoding does."""
        self.assertEqual(_error(Obj({"a": INT}, strict=True), {"b": 1}, "o"), 'o: json: unknown field "b"')

    def test_required_field(self) -> None:
        """A required field must be present and not null."""
        self.assertEqual(_error(Obj({"a": INT}, required=["a"]), {}, "o"), 'o: missing required field "a"')

    def test_object_named_type(self) -> None:
        """An object spec names its Go type in errors."""
        self.assertEqual(_error(Obj({}, name="caddyhttp.Server"), [], "s"),
                         "json: cannot unmarshal array into s of type caddyhttp.Server")

    def test_one_of(self) -> None:
        """OneOf takes any of its shapes; a value of another JSON type names them all."""
        spec = OneOf(STRING, ListOf(STRING))
        check(spec, "a", "x")
        check(spec, ["a"], "x")
        self.assertEqual(_error(spec, 1), "json: cannot unmarshal number into x of type string or []string")
        self.assertEqual(_error(spec, [1]), "json: cannot unmarshal number into x[0] of type string")


class ModuleTests(SynchronousTestCase):
    def test_local_module_schemas(self) -> None:
        """A module's own fields are checked by its name; the name key itself is allowed."""
        spec = Module("ns", "kind", {"a": Obj({"n": INT}, strict=True)})
        check(spec, {"kind": "a", "n": 1}, "m")
        self.assertEqual(_error(spec, {"kind": "a", "n": "1"}, "m"), "json: cannot unmarshal string into m.n of type int")
        self.assertEqual(_error(spec, {"kind": 3}, "m"), "json: cannot unmarshal number into m.kind of type string")
        check(spec, {"kind": "unknown", "n": "anything"}, "m")  # the loader reports unknown modules

    def test_registered_module_schema(self) -> None:
        """A handler's schema comes from the registry: reverse_proxy's upstreams are checked."""
        spec = Module("http.handlers", "handler")
        self.assertEqual(
            _error(spec, {"handler": "reverse_proxy", "upstreams": [{"dial": 80}]}, "h"),
            "json: cannot unmarshal number into h.upstreams[0].dial of type string",
        )


class LoaderTests(SynchronousTestCase):
    def test_load_module_checks_declared_schema(self) -> None:
        """A module loaded on its own (no whole-config check) is still checked against its schema."""
        context = LoadContext()
        with self.assertRaises(ConfigError) as caught:
            context.load_handler({"handler": "rewrite", "uri_substring": [{"find": "a", "limit": "2"}]})
        self.assertEqual(str(caught.exception), "json: cannot unmarshal string into rewrite.uri_substring[0].limit of type int")

    def test_load_matcher_set_checks_declared_schema(self) -> None:
        """A matcher's value is checked against the matcher's schema before it is built."""
        with self.assertRaises(ConfigError) as caught:
            LoadContext().load_matcher_set({"remote_ip": {"ranges": "10.0.0.0/8"}})
        self.assertEqual(
            str(caught.exception), "json: cannot unmarshal string into match.remote_ip.ranges of type []string"
        )


def _server(**fields: Any) -> dict[str, Any]:
    return {"apps": {"http": {"servers": {"srv0": {"listen": [":8080"], **fields}}}}}


class ConfigTests(SynchronousTestCase):
    def assertRefused(self, config: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            validate_config(config)
        self.assertEqual(str(caught.exception), message)

    def test_unknown_top_level_field(self) -> None:
        """An unknown top-level field is refused as Caddy does."""
        self.assertRefused({"apps": {}, "bogus": 1}, 'config: json: unknown field "bogus"')

    def test_listen_string(self) -> None:
        """A string where the listen list belongs names the server's field."""
        self.assertRefused(
            {"apps": {"http": {"servers": {"srv0": {"listen": ":80"}}}}},
            "json: cannot unmarshal string into apps.http.servers.srv0.listen of type []string",
        )

    def test_route_matcher_host(self) -> None:
        """A bad host matcher is refused before automatic HTTPS reads it."""
        self.assertRefused(
            _server(routes=[{"match": [{"host": "example.com"}]}]),
            "json: cannot unmarshal string into apps.http.servers.srv0.routes[0].match[0].host of type []string",
        )

    def test_nested_subroute_handler(self) -> None:
        """Handlers inside a subroute are checked with their own schema."""
        self.assertRefused(
            _server(routes=[{"handle": [{"handler": "subroute", "routes": [
                {"handle": [{"handler": "headers", "response": {"set": {"X": "y"}}}]}]}]}]),
            "json: cannot unmarshal string into "
            "apps.http.servers.srv0.routes[0].handle[0].routes[0].handle[0].response.set.X of type []string",
        )

    def test_tls_policy_subjects(self) -> None:
        """An automation policy's subjects must be a list of strings."""
        self.assertRefused(
            {"apps": {"tls": {"automation": {"policies": [{"subjects": "a.example"}]}}}},
            "json: cannot unmarshal string into apps.tls.automation.policies[0].subjects of type []string",
        )

    def test_logging_level(self) -> None:
        """A log's level must be a string."""
        self.assertRefused(
            {"logging": {"logs": {"default": {"level": 3}}}},
            "json: cannot unmarshal number into logging.logs.default.level of type string",
        )

    def test_two_servers_same_listener(self) -> None:
        """Two servers on one address are refused as Caddy's App.Validate does (no Twisted name clash)."""
        self.assertRefused(
            {"apps": {"http": {"servers": {"a": {"listen": [":8080"]}, "b": {"listen": ["127.0.0.1:80", ":8079-8080"]}}}}},
            "server b: listener address repeated: tcp/:8080 (already claimed by server 'a')",
        )

    def test_one_server_listener_twice(self) -> None:
        """A server naming one address twice is refused too."""
        self.assertRefused(
            {"apps": {"http": {"servers": {"a": {"listen": [":8080", "tcp/:8080"]}}}}},
            "server a: listener address repeated: tcp/:8080 (already claimed by server 'a')",
        )

    def test_valid_config_passes_and_nulls_dropped(self) -> None:
        """A well-typed config passes; its null fields are removed as Go ignores them."""
        config = _server(routes=[{"handle": [{"handler": "static_response", "body": "hi"}], "group": None}])
        check_config(config)
        self.assertEqual(config["apps"]["http"]["servers"]["srv0"]["routes"][0], {"handle": [
            {"handler": "static_response", "body": "hi"}]})


class WorkersKeyTests(SynchronousTestCase):
    def test_workers_is_a_known_top_level_key(self) -> None:
        """txcaddy's ``workers`` key passes the top-level check that refuses unknown keys."""
        check_config({"workers": 2})
        check_config({"workers": "auto"})
        self.assertRaises(ConfigError, check_config, {"worker": 2})

    def test_bad_workers_value_fails_the_load(self) -> None:
        """A service refuses a config whose ``workers`` is not a positive number or auto."""
        from txcaddy.service import CaddyService

        for bad in (0, "lots", True):
            self.assertRaises(ConfigError, CaddyService, {"workers": bad}, inherited=[])
