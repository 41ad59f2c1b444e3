"""Automatic HTTPS phase 1 (``txcaddy.tls.autohttps``) on configs adapted from Caddyfiles.

The expected redirects are Caddy 2.6.2's (``autohttps.go``; the ports checked against the
binary, see ``shared/spec/wave2-caddy-facts.md`` §1.3).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt
from txcaddy.service import plain_json
from txcaddy.tls import autohttps, names
from txcaddy.tls.autohttps import REDIRECT_SERVER, plan


def _apps(caddyfile: str) -> dict[str, Any]:
    config, _ = adapt(caddyfile, "Caddyfile")
    return plain_json(config).get("apps") or {}


def _plan(caddyfile: str, loaded: Any = lambda name: False) -> autohttps.AutoHTTPSPlan:
    apps = _apps(caddyfile)
    return plan(apps.get("http"), apps.get("tls"), loaded)


def _locations(routes: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    """(host matcher or None, Location) of each redirect route, in order."""
    out = []
    for route in routes:
        handler = route["handle"][0]
        if handler.get("status_code") == 308:
            out.append((route["match"][0].get("host"), handler["headers"]["Location"][0]))
    return out


class SubjectTests(SynchronousTestCase):
    def test_qualifies_for_certificate(self) -> None:
        """certmagic's name rules: wildcards only as a whole first label, no odd characters."""
        good = ["example.com", "*.example.com", "*", "localhost", "127.0.0.1", "intranet"]
        bad = ["", " ", ".example.com", "example.com.", "a.*.com", "**.example.com", "ex ample.com", "a+b.com"]
        self.assertEqual([n for n in good if names.subject_qualifies_for_cert(n)], good)
        self.assertEqual([n for n in bad if names.subject_qualifies_for_cert(n)], [])

    def test_public_names(self) -> None:
        """Internal names, IPs and second-level wildcards cannot have public certificates."""
        public = ["example.com", "*.example.com", "intranet", "host.lan", "LOCALHOST"]
        private = ["localhost", "a.localhost", "printer.local", "127.0.0.1", "::1", "*.com", "*"]
        self.assertEqual([n for n in public if names.subject_qualifies_for_public_cert(n)], public)
        self.assertEqual([n for n in private if names.subject_qualifies_for_public_cert(n)], [])


class PlanTests(SynchronousTestCase):
    def test_domain_site(self) -> None:
        """A domain site: TLS on :443, the name managed by ACME, a redirect server on :80."""
        result = _plan("example.com {\n respond hi\n}\n")
        servers = result.http["servers"]
        self.assertEqual(servers["srv0"]["tls_connection_policies"], [{}])
        self.assertEqual(result.managed, ["example.com"])
        self.assertEqual(servers[REDIRECT_SERVER]["listen"], [":80"])
        self.assertEqual(
            _locations(servers[REDIRECT_SERVER]["routes"]),
            [(["example.com"], "https://{http.request.host}{http.request.uri}"),
             (None, "https://{http.request.host}{http.request.uri}")],
        )
        policies = result.tls["automation"]["policies"]
        self.assertEqual(policies, [{"issuers": [{"module": "acme"}, {"module": "zerossl"}]}])

    def test_redirect_route_shape(self) -> None:
        """The redirect is a static 308 over plain HTTP that closes the connection."""
        route = _plan("example.com {\n respond hi\n}\n").http["servers"][REDIRECT_SERVER]["routes"][0]
        self.assertEqual(route["match"], [{"protocol": "http", "host": ["example.com"]}])
        self.assertEqual(route["handle"], [{
            "handler": "static_response", "status_code": 308,
            "headers": {"Location": ["https://{http.request.host}{http.request.uri}"]}, "close": True,
        }])

    def test_localhost_gets_internal_issuer(self) -> None:
        """``localhost`` is managed by a policy of its own with the internal issuer."""
        result = _plan("localhost {\n respond hi\n}\n")
        self.assertEqual(result.managed, ["localhost"])
        policies = result.tls["automation"]["policies"]
        self.assertEqual(policies[-1], {"subjects": ["localhost"], "issuers": [{"module": "internal"}]})

    def test_nonstandard_port_in_location(self) -> None:
        """A site on :8443 redirects to ``host:8443``; the redirect listens on :80."""
        result = _plan("example.com:8443 {\n respond hi\n}\n")
        redirects = result.http["servers"][REDIRECT_SERVER]
        self.assertEqual(redirects["listen"], [":80"])
        self.assertEqual(_locations(redirects["routes"])[0],
                         (["example.com"], "https://{http.request.host}:8443{http.request.uri}"))

    def test_https_port_is_left_out(self) -> None:
        """With ``https_port 28443`` a site on that port redirects without a port (Caddy, observed)."""
        result = _plan("{\n http_port 28080\n https_port 28443\n}\nlocalhost {\n respond hi\n}\n"
                       "a.localhost:29443 {\n respond a\n}\n")
        redirects = result.http["servers"][REDIRECT_SERVER]
        self.assertEqual(redirects["listen"], [":28080"])
        self.assertEqual(
            _locations(redirects["routes"]),
            [(["localhost"], "https://{http.request.host}{http.request.uri}"),
             (["a.localhost"], "https://{http.request.host}:29443{http.request.uri}"),
             (None, "https://{http.request.host}{http.request.uri}")],
        )

    def test_acme_issuers_get_explicit_ports(self) -> None:
        """Explicit ``http_port``/``https_port`` become the ACME challenges' alternate ports."""
        result = _plan("{\n http_port 8080\n https_port 8443\n}\nexample.com {\n respond hi\n}\n")
        acme = result.tls["automation"]["policies"][0]["issuers"][0]
        self.assertEqual(acme["challenges"], {"http": {"alternate_port": 8080},
                                              "tls-alpn": {"alternate_port": 8443}})

    def test_redirects_join_existing_http_server(self) -> None:
        """An ``http://`` site on :80 gets the redirects after its host routes, then a catch-all."""
        result = _plan("example.com {\n respond secure\n}\nhttp://other.com {\n respond plain\n}\n"
                       "http:// {\n respond fallback\n}\n")
        servers = result.http["servers"]
        self.assertNotIn(REDIRECT_SERVER, servers)
        plain = next(s for s in servers.values() if s["listen"] == [":80"])
        hosts = [r.get("match", [{}])[0].get("host") for r in plain["routes"]]
        self.assertEqual(hosts, [["other.com"], ["example.com"], None, None])
        self.assertEqual(plain["routes"][2]["handle"][0]["handler"], "subroute")  # the user's catch-all
        self.assertEqual(_locations(plain["routes"]),
                         [(["example.com"], "https://{http.request.host}{http.request.uri}"),
                          (None, "https://{http.request.host}{http.request.uri}")])
        self.assertNotIn("tls_connection_policies", plain)

    def test_auto_https_off(self) -> None:
        """``auto_https off``: nothing managed, no redirects; the Caddyfile's TLS policy stays."""
        result = _plan("{\n auto_https off\n}\nexample.com {\n respond hi\n}\n")
        self.assertEqual(result.managed, [])
        self.assertNotIn(REDIRECT_SERVER, result.http["servers"])
        self.assertEqual(result.http["servers"]["srv0"].get("tls_connection_policies"), [{}])

    def test_disable_redirects(self) -> None:
        """``auto_https disable_redirects``: certificates yes, redirects no."""
        result = _plan("{\n auto_https disable_redirects\n}\nexample.com {\n respond hi\n}\n")
        self.assertEqual(result.managed, ["example.com"])
        self.assertNotIn(REDIRECT_SERVER, result.http["servers"])

    def test_disable_certs(self) -> None:
        """``auto_https disable_certs``: TLS and redirects, no managed names."""
        result = _plan("{\n auto_https disable_certs\n}\nexample.com {\n respond hi\n}\n")
        self.assertEqual(result.managed, [])
        self.assertIn(REDIRECT_SERVER, result.http["servers"])
        self.assertEqual(result.http["servers"]["srv0"]["tls_connection_policies"], [{}])

    def test_loaded_certificate_skips_management(self) -> None:
        """A name a loaded certificate covers is not managed, unless ``ignore_loaded_certs``."""
        self.assertEqual(_plan("example.com {\n respond hi\n}\n", lambda n: n == "example.com").managed, [])
        result = _plan("{\n auto_https ignore_loaded_certs\n}\nexample.com {\n respond hi\n}\n",
                       lambda n: n == "example.com")
        self.assertEqual(result.managed, ["example.com"])

    def test_http_port_only_server_untouched(self) -> None:
        """A server only on the HTTP port gets neither TLS nor redirects."""
        result = _plan("http://example.com {\n respond hi\n}\n")
        self.assertEqual(result.managed, [])
        self.assertEqual(list(result.http["servers"]), ["srv0"])
        self.assertNotIn("tls_connection_policies", result.http["servers"]["srv0"])

    def test_catch_all_https_site(self) -> None:
        """``https://`` with no name: TLS on, a catch-all redirect, nothing managed."""
        result = _plan("https:// {\n respond hi\n}\n")
        self.assertEqual(result.managed, [])
        redirects = result.http["servers"][REDIRECT_SERVER]
        self.assertEqual(_locations(redirects["routes"]),
                         [(None, "https://{http.request.host}{http.request.uri}")] * 2)

    def test_explicit_policy_keeps_its_issuer(self) -> None:
        """A name with its own automation policy (``tls internal``) gets no extra policy."""
        result = _plan("example.com {\n tls internal\n respond hi\n}\n")
        policies = result.tls["automation"]["policies"]
        self.assertEqual(policies[0], {"subjects": ["example.com"], "issuers": [{"module": "internal"}]})
        self.assertEqual(policies[1], {"issuers": [{"module": "acme"}, {"module": "zerossl"}]})
        self.assertEqual(len(policies), 2)

    def test_input_not_changed(self) -> None:
        """The JSON given is left as it was (the plan works on copies)."""
        apps = _apps("example.com {\n respond hi\n}\n")
        before = repr(apps)
        plan(apps["http"], apps.get("tls"))
        self.assertEqual(repr(apps), before)

    def test_listener_uses_tls(self) -> None:
        """TLS on every listener of a server with policies, except one on the HTTP port."""
        from txcaddy.caddyfile.addresses import NetworkAddress

        server: dict[str, Any] = {"tls_connection_policies": [{}]}
        self.assertTrue(autohttps.listener_uses_tls(server, NetworkAddress.parse(":8080"), 80))
        self.assertFalse(autohttps.listener_uses_tls(server, NetworkAddress.parse(":80"), 80))
        self.assertFalse(autohttps.listener_uses_tls({}, NetworkAddress.parse(":443"), 80))
