"""Tests for txcaddy.admin._paths: Caddy's /config path semantics, ETags and the @id index."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.admin._paths import (
    ConfigPathError,
    access,
    encode,
    etag,
    fnv32a,
    index_ids,
    mutated,
    strip_ids,
)


def _raw() -> dict[str, Any]:
    return {"config": {"apps": {"http": {"servers": {"a": {"listen": [":80", ":81"]}}}}, "n": 1}}


class AccessTests(SynchronousTestCase):
    def test_get_object_key_and_missing_key(self) -> None:
        """GET returns the subtree; a missing last key reads as null."""
        self.assertEqual(access(_raw(), "GET", "/config/apps/http/servers/a"), {"listen": [":80", ":81"]})
        self.assertIsNone(access(_raw(), "GET", "/config/nothing"))

    def test_get_array_element(self) -> None:
        """GET .../listen/1 reads an array element by index."""
        self.assertEqual(access(_raw(), "GET", "/config/apps/http/servers/a/listen/1"), ":81")

    def test_array_index_errors(self) -> None:
        """A non-number or out-of-range index is a 4xx error naming the path."""
        with self.assertRaises(ConfigPathError) as caught:
            access(_raw(), "GET", "/config/apps/http/servers/a/listen/x")
        self.assertEqual(caught.exception.status, 400)
        self.assertIn("invalid array index 'x'", caught.exception.message)
        with self.assertRaises(ConfigPathError) as caught:
            access(_raw(), "GET", "/config/apps/http/servers/a/listen/2")
        self.assertEqual(caught.exception.status, 404)
        self.assertIn("array index out of bounds: 2", caught.exception.message)

    def test_post_appends_to_array_and_sets_objects(self) -> None:
        """POST appends to an array, each element with /...; on an object key it sets the value."""
        raw = _raw()
        access(raw, "POST", "/config/apps/http/servers/a/listen", ":82")
        access(raw, "POST", "/config/apps/http/servers/a/listen/...", [":83", ":84"])
        access(raw, "POST", "/config/n", 2)
        self.assertEqual(raw["config"]["apps"]["http"]["servers"]["a"]["listen"], [":80", ":81", ":82", ":83", ":84"])
        self.assertEqual(raw["config"]["n"], 2)

    def test_post_ellipses_needs_an_array_body(self) -> None:
        """POST .../... with a non-array body is refused."""
        with self.assertRaises(ConfigPathError) as caught:
            access(_raw(), "POST", "/config/apps/http/servers/a/listen/...", ":82")
        self.assertEqual(caught.exception.message, "final element is not an array")

    def test_put_creates_and_refuses_existing(self) -> None:
        """PUT creates missing keys (and the objects on the way), and refuses an existing key with 409."""
        raw = _raw()
        access(raw, "PUT", "/config/apps/tls/automation", {"policies": []})
        self.assertEqual(raw["config"]["apps"]["tls"], {"automation": {"policies": []}})
        with self.assertRaises(ConfigPathError) as caught:
            access(raw, "PUT", "/config/n", 3)
        self.assertEqual((caught.exception.status, caught.exception.message),
                         (409, "[/config/n] key already exists: n"))

    def test_put_inserts_into_array(self) -> None:
        """PUT at an array index inserts there, shifting the rest right (index == len appends)."""
        raw = _raw()
        access(raw, "PUT", "/config/apps/http/servers/a/listen/0", ":79")
        access(raw, "PUT", "/config/apps/http/servers/a/listen/3", ":99")
        self.assertEqual(raw["config"]["apps"]["http"]["servers"]["a"]["listen"], [":79", ":80", ":81", ":99"])

    def test_patch_replaces_existing_only(self) -> None:
        """PATCH replaces an existing key or element; a missing key is 404."""
        raw = _raw()
        access(raw, "PATCH", "/config/apps/http/servers/a/listen/0", ":8080")
        access(raw, "PATCH", "/config/n", 5)
        self.assertEqual(raw["config"]["apps"]["http"]["servers"]["a"]["listen"], [":8080", ":81"])
        self.assertEqual(raw["config"]["n"], 5)
        with self.assertRaises(ConfigPathError) as caught:
            access(raw, "PATCH", "/config/missing", 1)
        self.assertEqual((caught.exception.status, caught.exception.message),
                         (404, "[/config/missing] key does not exist: missing"))

    def test_delete_key_and_element(self) -> None:
        """DELETE removes a key (absent is fine) or an array element."""
        raw = _raw()
        access(raw, "DELETE", "/config/apps/http/servers/a/listen/0")
        access(raw, "DELETE", "/config/n")
        access(raw, "DELETE", "/config/absent")
        self.assertEqual(raw, {"config": {"apps": {"http": {"servers": {"a": {"listen": [":81"]}}}}}})

    def test_traversal_into_a_scalar_or_missing_object(self) -> None:
        """Walking through a scalar or a missing object is an error."""
        for path in ("/config/n/x", "/config/missing/x"):
            with self.assertRaises(ConfigPathError) as caught:
                access(_raw(), "GET", path)
            self.assertIn("invalid traversal path at", caught.exception.message)

    def test_empty_path(self) -> None:
        """An empty path is refused."""
        with self.assertRaises(ConfigPathError):
            access(_raw(), "GET", "/")

    def test_mutated_leaves_the_original_alone(self) -> None:
        """mutated() changes a copy."""
        raw = _raw()
        changed = mutated(raw, "DELETE", "/config/apps", None)
        self.assertEqual(raw, _raw())
        self.assertEqual(changed, {"config": {"n": 1}})


class EncodingTests(SynchronousTestCase):
    def test_encode_like_go(self) -> None:
        """Compact, sorted keys, HTML characters escaped, a newline at the end."""
        self.assertEqual(encode({"b": "<&>", "a": 1}), b'{"a":1,"b":"\\u003c\\u0026\\u003e"}\n')

    def test_fnv32a_and_etag(self) -> None:
        """FNV-1a 32 of known inputs; the ETag quotes path and hex hash."""
        self.assertEqual(fnv32a(b""), 0x811C9DC5)
        self.assertEqual(fnv32a(b"a"), 0xE40C292C)
        self.assertEqual(etag("/config/", b"a"), '"/config/ e40c292c"')


class IdTests(SynchronousTestCase):
    def test_index_ids(self) -> None:
        """@id strings and numbers map to the /config path of their object."""
        config = {"apps": {"http": {"servers": {"s": {"@id": "srv", "routes": [{"@id": 7}]}}}}}
        self.assertEqual(index_ids(config), {
            "srv": "/config/apps/http/servers/s", "7": "/config/apps/http/servers/s/routes/0"})

    def test_strip_ids(self) -> None:
        """strip_ids removes every @id, in objects nested in arrays too."""
        config = {"@id": "x", "a": [{"@id": 1, "b": 2}]}
        self.assertEqual(strip_ids(config), {"a": [{"b": 2}]})
