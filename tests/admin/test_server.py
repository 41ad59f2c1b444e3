"""The admin API over real loopback sockets: endpoints, status codes, bodies, checks."""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from txcaddy._reactor import default_reactor
from txcaddy.admin import _server
from txcaddy.admin._paths import etag
from txcaddy.service import CaddyService


def site_config(body: str = "one", admin: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One site on a free loopback port answering ``body``; the admin API on another."""
    config: dict[str, Any] = {
        "admin": admin if admin is not None else {"listen": "127.0.0.1:0"},
        "apps": {"http": {"servers": {"srv0": {
            "@id": "srv0",
            "listen": ["127.0.0.1:0"],
            "routes": [{"handle": [{"handler": "static_response", "body": body}]}]}}}},
    }
    config.update(extra)
    return config


class AdminTestCase(TestCase):
    timeout = 30

    def start(self, config: dict[str, Any] | None = None, **kwargs: Any) -> CaddyService:
        self.stopped: list[bool] = []
        self.autosave = os.path.abspath(self.mktemp())
        service = CaddyService(config or site_config(), reactor=default_reactor(), admin=True,
                               stop=lambda: self.stopped.append(True), autosave=self.autosave, **kwargs)
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        return service

    @property
    def admin(self) -> str:
        assert self.service.admin is not None
        return f"http://127.0.0.1:{self.service.admin.bound_port()}"

    @property
    def site(self) -> str:
        (address,) = self.service.boundAddresses()["srv0"]
        return f"http://127.0.0.1:{address.port}"

    @inlineCallbacks
    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             base: str | None = None) -> Any:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        all_headers: dict[Any, Any] = {"Content-Type": "application/json"} if data is not None else {}
        all_headers.update(headers or {})
        response = yield treq.request(method, (base or self.admin) + path, data=data, headers=all_headers,
                                      persistent=False, allow_redirects=False)
        content = yield response.content()
        return response, content

    @inlineCallbacks
    def get_site(self) -> Any:
        response, body = yield self.call("GET", "/", base=self.site)
        return body


class ConfigEndpointTests(AdminTestCase):
    @inlineCallbacks
    def test_get_config_with_etag(self) -> Any:
        """GET /config/ returns the running JSON (with @id) and Caddy's ETag."""
        self.start()
        response, body = yield self.call("GET", "/config/apps/http/servers/srv0/routes/0/handle/0/body")
        self.assertEqual((response.code, body), (200, b'"one"\n'))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(response.headers.getRawHeaders("etag"),
                         [etag("/config/apps/http/servers/srv0/routes/0/handle/0/body", b'"one"\n')])
        response, body = yield self.call("GET", "/config/")
        self.assertEqual(json.loads(body)["apps"]["http"]["servers"]["srv0"]["@id"], "srv0")

    @inlineCallbacks
    def test_patch_reloads_and_the_site_serves_the_change(self) -> Any:
        """PATCH of a value reloads: the site answers with the new body on the same port."""
        self.start()
        before = self.site
        response, body = yield self.call("PATCH", "/config/apps/http/servers/srv0/routes/0/handle/0/body", "two")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(self.site, before)
        self.assertEqual((yield self.get_site()), b"two")
        with open(self.autosave) as f:
            self.assertEqual(json.load(f)["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["body"], "two")

    @inlineCallbacks
    def test_client_errors_are_4xx_json(self) -> Any:
        """Bad paths, PUT on an existing key, bad JSON and wrong Content-Type are 4xx with {"error"}."""
        self.start()
        cases = [
            ("PUT", "/config/apps", {}, None, 409, "[/config/apps] key already exists: apps"),
            ("PATCH", "/config/nope", 1, None, 404, "[/config/nope] key does not exist: nope"),
            ("GET", "/config/apps/http/servers/srv0/listen/9", None, None, 404,
             "[/config/apps/http/servers/srv0/listen/9] array index out of bounds: 9"),
            ("POST", "/config/x", b"{", None, 400, None),
            ("POST", "/config/x", b"1", {"Content-Type": "text/plain"}, 400,
             "unacceptable content-type: text/plain; 'application/json' required"),
        ]
        for method, path, body, headers, status, message in cases:
            response, content = yield self.call(method, path, body, headers)
            self.assertEqual(response.code, status, (method, path, content))
            self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
            error = json.loads(content)["error"]
            if message is not None:
                self.assertEqual(error, message)

    @inlineCallbacks
    def test_a_change_that_fails_to_load_is_400_and_changes_nothing(self) -> Any:
        """A mutation whose config does not load answers 400 and leaves config and site as they were."""
        self.start()
        response, content = yield self.call(
            "PATCH", "/config/apps/http/servers/srv0/routes/0/handle/0", {"handler": "no_such_handler"})
        self.assertEqual(response.code, 400)
        self.assertIn("loading config:", json.loads(content)["error"])
        self.assertEqual((yield self.get_site()), b"one")
        response, content = yield self.call("GET", "/config/apps/http/servers/srv0/routes/0/handle/0/handler")
        self.assertEqual(content, b'"static_response"\n')

    @inlineCallbacks
    def test_if_match(self) -> Any:
        """If-Match with the current hash applies; a stale one is 412; a malformed one is 400."""
        self.start()
        path = "/config/apps/http/servers/srv0/routes/0/handle/0/body"
        response, _ = yield self.call("GET", path)
        (tag,) = response.headers.getRawHeaders("etag")
        response, _ = yield self.call("PATCH", path, "two", {"If-Match": tag})
        self.assertEqual(response.code, 200)
        response, _ = yield self.call("PATCH", path, "three", {"If-Match": tag})
        self.assertEqual(response.code, 412)
        response, _ = yield self.call("PATCH", path, "three", {"If-Match": "nope"})
        self.assertEqual(response.code, 400)
        self.assertEqual((yield self.get_site()), b"two")

    @inlineCallbacks
    def test_id_paths(self) -> Any:
        """/id/<id>/rest addresses the object with that @id; unknown ids are 404."""
        self.start()
        response, body = yield self.call("GET", "/id/srv0/listen/0")
        self.assertEqual((response.code, body), (200, b'"127.0.0.1:0"\n'))
        response, body = yield self.call("GET", "/id/nope")
        self.assertEqual((response.code, json.loads(body)), (404, {"error": "unknown object ID 'nope'"}))
        response, body = yield self.call("GET", "/id/")
        self.assertEqual((response.code, json.loads(body)), (400, {"error": "request path is missing object ID"}))

    @inlineCallbacks
    def test_extra_routes(self) -> Any:
        """An endpoint registered in AdminService.routes (the /metrics hook) is served, checks first."""
        self.start()
        assert self.service.admin is not None
        self.service.admin.routes["/metrics"] = lambda request, method: f"{method} metrics\n".encode()
        response, body = yield self.call("GET", "/metrics")
        self.assertEqual((response.code, body), (200, b"GET metrics\n"))
        response, _ = yield self.call("GET", "/metrics", headers={"Host": "evil"})
        self.assertEqual(response.code, 403)

    @inlineCallbacks
    def test_redirect_and_unknown_paths(self) -> Any:
        """/config redirects to /config/; unknown paths are a plain 404."""
        self.start()
        response, _ = yield self.call("GET", "/config")
        self.assertEqual((response.code, response.headers.getRawHeaders("location")), (301, ["/config/"]))
        response, body = yield self.call("GET", "/nope")
        self.assertEqual((response.code, body), (404, b"404 page not found\n"))


class LoadEndpointTests(AdminTestCase):
    @inlineCallbacks
    def test_load_json(self) -> Any:
        """POST /load with JSON replaces the config."""
        self.start()
        response, body = yield self.call("POST", "/load", site_config("two"))
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual((yield self.get_site()), b"two")

    @inlineCallbacks
    def test_unchanged_config_is_not_reloaded_unless_forced(self) -> Any:
        """Loading the running config again reloads nothing; Cache-Control: must-revalidate forces it."""
        self.start()
        outcomes: list[bool] = []
        self.service.on_reload.append(outcomes.append)
        response, _ = yield self.call("POST", "/load", self.service.raw_config)
        self.assertEqual((response.code, outcomes), (200, []))
        response, _ = yield self.call("POST", "/load", self.service.raw_config, {"Cache-Control": "must-revalidate"})
        self.assertEqual((response.code, outcomes), (200, [True]))

    @inlineCallbacks
    def test_bad_admin_object_fails_the_load(self) -> Any:
        """An admin object with an unknown field is a 400 and changes nothing."""
        self.start()
        response, body = yield self.call("POST", "/load", site_config("two", admin={"listen": "127.0.0.1:0", "nope": 1}))
        self.assertEqual((response.code, json.loads(body)), (400, {"error": 'loading config: admin: unknown field "nope"'}))
        self.assertEqual((yield self.get_site()), b"one")

    @inlineCallbacks
    def test_load_caddyfile_with_warning(self) -> Any:
        """A text/caddyfile load is adapted; an unformatted one answers its warning as JSON."""
        self.start()
        port = self.service.boundAddresses()["srv0"][0].port
        admin_port = self.service.admin.bound_port()  # type: ignore[union-attr]
        text = (f"{{\n\tadmin 127.0.0.1:{admin_port}\n}}\n\nhttp://127.0.0.1:{port} {{\n"
                "  bind 127.0.0.1\n\trespond \"from caddyfile\"\n}\n")
        response, body = yield self.call("POST", "/load", text.encode(), {"Content-Type": "text/caddyfile"})
        self.assertEqual(response.code, 200, body)
        warning = json.loads(body)[0]
        self.assertEqual((warning["file"], warning["message"]), (
            "Caddyfile", "Caddyfile input is not formatted; run the 'caddy fmt' command to fix inconsistencies"))
        self.assertEqual((yield self.get_site()), b"from caddyfile")

    @inlineCallbacks
    def test_load_errors(self) -> Any:
        """Unknown adapters, bad JSON and configs that fail to load are 400; GET is 405."""
        self.start()
        response, body = yield self.call("POST", "/load", b"a=b", {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((response.code, json.loads(body)),
                         (400, {"error": "unrecognized config adapter 'x-www-form-urlencoded'"}))
        response, body = yield self.call("POST", "/load", b"{nope")
        self.assertEqual(response.code, 400)
        response, body = yield self.call("GET", "/load")
        self.assertEqual(response.code, 405)
        bad = site_config("two")
        bad["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["handler"] = "nope"
        response, body = yield self.call("POST", "/load", bad)
        self.assertEqual(response.code, 400)
        self.assertTrue(json.loads(body)["error"].startswith("loading config: "))
        self.assertEqual((yield self.get_site()), b"one")

    @inlineCallbacks
    def test_failed_load_does_not_move_the_admin_endpoint(self) -> Any:
        """A config that fails to load with other admin settings leaves the admin endpoint where it was."""
        self.start()
        before = self.admin
        bad = site_config("two", admin={"listen": "127.0.0.1:1"})
        bad["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["handler"] = "nope"
        response, _ = yield self.call("POST", "/load", bad)
        self.assertEqual(response.code, 400)
        self.assertEqual(self.admin, before)
        response, _ = yield self.call("GET", "/config/")
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_failed_bind_leaves_the_old_config(self) -> Any:
        """A config whose new listener cannot bind answers 400; the old config still serves."""
        self.start()
        taken = self.service.admin.bound_port()  # type: ignore[union-attr]
        bad = site_config("two")
        bad["apps"]["http"]["servers"]["srv1"] = {
            "listen": [f"127.0.0.1:{taken}"], "routes": []}
        response, body = yield self.call("POST", "/load", bad)
        self.assertEqual(response.code, 400, body)
        self.assertEqual((yield self.get_site()), b"one")
        self.assertEqual(sorted(self.service.boundAddresses()), ["srv0"])

    @inlineCallbacks
    def test_adapt(self) -> Any:
        """POST /adapt answers {"result": JSON} without loading it."""
        self.start()
        response, body = yield self.call(
            "POST", "/adapt", b"http://127.0.0.1:9 {\n\trespond hi\n}\n", {"Content-Type": "text/caddyfile"})
        self.assertEqual(response.code, 200)
        result = json.loads(body)["result"]
        self.assertEqual(result["apps"]["http"]["servers"]["srv0"]["listen"], [":9"])
        self.assertEqual((yield self.get_site()), b"one")

    @inlineCallbacks
    def test_stop(self) -> Any:
        """POST /stop answers 200 and then calls the stop function; GET is 405."""
        self.start()
        response, _ = yield self.call("GET", "/stop")
        self.assertEqual(response.code, 405)
        response, body = yield self.call("POST", "/stop")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(self.stopped, [True])


class SecurityTests(AdminTestCase):
    @inlineCallbacks
    def test_host_must_match(self) -> Any:
        """A Host not in the allowed set (DNS rebinding) is 403; localhost:PORT is allowed."""
        self.start()
        port = self.service.admin.bound_port()  # type: ignore[union-attr]
        response, body = yield self.call("GET", "/config/", headers={"Host": "evil.example"})
        self.assertEqual((response.code, json.loads(body)), (403, {"error": "host not allowed: evil.example"}))
        response, _ = yield self.call("GET", "/config/", headers={"Host": "localhost"})
        self.assertEqual(response.code, 403)
        response, _ = yield self.call("GET", "/config/", headers={"Host": f"localhost:{port}"})
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_enforce_origin(self) -> Any:
        """With enforce_origin a missing Origin is 403 and an allowed one gets CORS headers."""
        self.start(site_config(admin={"listen": "127.0.0.1:0", "enforce_origin": True,
                                      "origins": ["127.0.0.1", "http://localhost:1"]}))
        port = self.service.admin.bound_port()  # type: ignore[union-attr]
        headers = {"Host": "127.0.0.1"}
        response, body = yield self.call("GET", "/config/", headers=headers)
        self.assertEqual((response.code, json.loads(body)), (403, {"error": "required Origin header is missing or invalid"}))
        response, _ = yield self.call("GET", "/config/", headers={**headers, "Origin": "http://127.0.0.1"})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"), ["http://127.0.0.1"])
        response, _ = yield self.call("GET", "/config/", headers={**headers, "Origin": f"http://evil:{port}"})
        self.assertEqual(response.code, 403)

    @inlineCallbacks
    def test_websocket_upgrade_refused(self) -> Any:
        """Upgrade: websocket requests are refused."""
        self.start()
        response, _ = yield self.call("GET", "/config/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        self.assertEqual(response.code, 400)

    @inlineCallbacks
    def test_body_limit(self) -> Any:
        """A body over MAX_BODY is answered 413."""
        self.patch(_server, "MAX_BODY", 100)
        self.start()
        response, _ = yield self.call("POST", "/load", b"{" + b" " * 200 + b"}")
        self.assertEqual(response.code, 413)

    def test_non_loopback_needs_origins(self) -> None:
        """An admin listener on a non-loopback address without origins is a config error."""
        from txcaddy.errors import ConfigError

        with self.assertRaises(ConfigError):
            _server.AdminSettings({"listen": "0.0.0.0:2019"})
        self.assertIsNotNone(_server.AdminSettings({"listen": "0.0.0.0:2019", "origins": ["x:1"]}).endpoint)
        self.assertIsNone(_server.AdminSettings({"disabled": True}).endpoint)

    @inlineCallbacks
    def test_unix_socket_and_admin_off(self) -> Any:
        """admin unix//path listens there (empty Host allowed); a load with admin off closes it."""
        import tempfile

        from txcaddy.cli import admin_request

        directory = tempfile.mkdtemp(prefix="txa")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "admin.sock")
        self.start(site_config(admin={"listen": f"unix/{path}"}))
        status, body = yield _in_thread(admin_request, f"unix/{path}", "GET", "/config/admin", b"", {})
        self.assertEqual((status, body), (200, f'{{"listen":"unix/{path}"}}\n'.encode()))
        status, _ = yield _in_thread(admin_request, f"unix/{path}", "POST", "/load",
                                     json.dumps(site_config(admin={"disabled": True})).encode(),
                                     {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertIsNone(self.service.admin.port)  # type: ignore[union-attr]


class UpstreamsAndPKITests(AdminTestCase):
    @inlineCallbacks
    def test_reverse_proxy_upstreams(self) -> Any:
        """GET /reverse_proxy/upstreams lists each upstream with requests in flight and fails."""
        config = site_config()
        config["apps"]["http"]["servers"]["srv0"]["routes"] = [
            {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:9"}]}]}]
        self.start(config)
        response, body = yield self.call("GET", "/reverse_proxy/upstreams")
        self.assertEqual((response.code, json.loads(body)),
                         (200, [{"address": "127.0.0.1:9", "num_requests": 0, "fails": 0}]))
        response, _ = yield self.call("POST", "/reverse_proxy/upstreams", {})
        self.assertEqual(response.code, 405)

    @inlineCallbacks
    def test_pki_unknown_ca(self) -> Any:
        """/pki/ca/<id> of a CA that does not exist is 404; other /pki paths too."""
        self.start()
        response, body = yield self.call("GET", "/pki/ca/local")
        self.assertEqual(response.code, 404)
        response, body = yield self.call("GET", "/pki/other")
        self.assertEqual((response.code, json.loads(body)), (404, {"error": "resource not found: /pki/other"}))


def _in_thread(f: Any, *args: Any) -> Deferred[Any]:
    from twisted.internet.threads import deferToThread

    return deferToThread(f, *args)


class PKIProvisionedTests(AdminTestCase):
    @inlineCallbacks
    def test_pki_ca_once_provisioned(self) -> Any:
        """/pki/ca/local answers the CA's names and PEMs; /certificates the chain."""
        storage = os.path.abspath(self.mktemp())
        self.start(site_config(storage={"module": "file_system", "root": storage},
                               apps={"pki": {"certificate_authorities": {"local": {"install_trust": False}}},
                                     "http": site_config()["apps"]["http"]}))
        assert self.service.tls is not None and self.service.tls.pki is not None and self.service.storage is not None
        yield self.service.tls.pki.provision(self.service.storage)
        response, body = yield self.call("GET", "/pki/ca/local")
        self.assertEqual(response.code, 200, body)
        info = json.loads(body)
        self.assertEqual((info["id"], info["name"]), ("local", "Caddy Local Authority"))
        self.assertTrue(info["root_certificate"].startswith("-----BEGIN CERTIFICATE-----"))
        response, chain = yield self.call("GET", "/pki/ca/local/certificates")
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/pem-certificate-chain"])
        self.assertEqual(chain.decode(), info["intermediate_certificate"] + info["root_certificate"])


class ResumeTests(AdminTestCase):
    def test_run_resume_loads_autosave(self) -> None:
        """txcaddy run --resume serves autosave.json; without one it falls back to --config."""
        import argparse

        from txcaddy import cli

        home = os.path.abspath(self.mktemp())
        self.patch(os, "environ", {**os.environ, "XDG_CONFIG_HOME": home})
        caddyfile = os.path.abspath(self.mktemp())
        with open(caddyfile, "w") as f:
            f.write("http://127.0.0.1:0 {\n\tbind 127.0.0.1\n\trespond \"file\"\n}\n")
        args = argparse.Namespace(config=caddyfile, adapter=None, resume=True)
        service = cli.run_service(args)
        self.assertIn('"file"', json.dumps(service.raw_config))
        os.makedirs(os.path.join(home, "caddy"))
        with open(os.path.join(home, "caddy", "autosave.json"), "w") as f:
            json.dump(site_config("saved"), f)
        service = cli.run_service(args)
        self.assertEqual(service.raw_config, site_config("saved"))
        self.assertEqual(service.autosave, os.path.join(home, "caddy", "autosave.json"))


class MetricsEndpointTests(AdminTestCase):
    """``/metrics`` on the admin endpoint: admin request counts and the reload gauges."""

    @inlineCallbacks
    def scrape(self) -> Any:
        from prometheus_client.parser import text_string_to_metric_families

        response, body = yield self.call("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    @inlineCallbacks
    def test_admin_requests_counted(self) -> Any:
        """Requests to the admin API are counted by handler, mux path, code and method; a failed
        handler also counts as an error."""
        self.start()
        yield self.call("GET", "/config/")
        yield self.call("PATCH", "/config/nope", 1)  # 404: no such key
        yield self.call("POST", "/load", b"{not json")
        samples = yield self.scrape()
        requests = "caddy_admin_http_requests_total"
        self.assertEqual(samples[(requests, (("code", "200"), ("handler", "admin"), ("method", "GET"),
                                             ("path", "/config/")))], 1)
        self.assertEqual(samples[(requests, (("code", "400"), ("handler", "load"), ("method", "POST"),
                                             ("path", "/load")))], 1)
        self.assertEqual(samples[(requests, (("code", "404"), ("handler", "admin"), ("method", "PATCH"),
                                             ("path", "/config/")))], 1)
        errors = "caddy_admin_http_request_errors_total"
        self.assertEqual(samples[(errors, (("handler", "load"), ("method", "POST"), ("path", "/load")))], 1)

    @inlineCallbacks
    def test_reload_gauges_follow_reloads(self) -> Any:
        """``caddy_config_last_reload_successful`` is 1 after start, 0 after a failed load, 1 again
        after a good one."""
        self.start()
        gauge = ("caddy_config_last_reload_successful", ())
        self.assertEqual((yield self.scrape())[gauge], 1)
        bad = site_config("two")
        bad["apps"]["http"]["servers"]["srv0"]["listen"] = 5  # not a list: a config error
        response, _ = yield self.call("POST", "/load", bad)
        self.assertEqual(response.code, 400)
        self.assertEqual((yield self.scrape())[gauge], 0)
        response, _ = yield self.call("POST", "/load", site_config("three"))
        self.assertEqual(response.code, 200)
        self.assertEqual((yield self.scrape())[gauge], 1)
        self.assertEqual((yield self.get_site()), b"three")
