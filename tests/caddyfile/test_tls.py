"""The tls directive's values and the tls/pki app builders, beyond what fixtures show."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile import directives  # noqa: F401  (registers everything)
from txcaddy.caddyfile.addresses import Address
from txcaddy.caddyfile.directives.options import PKI, CertificateAuthority
from txcaddy.caddyfile.directives.tls import (
    ACMEIssuer,
    CertSelection,
    ConnectionPolicy,
    FileLoader,
    InternalIssuer,
    ZeroSSLIssuer,
    first_pem_block,
    parse_tls,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import ConfigValue, GroupCounter, Helper
from txcaddy.caddyfile.jsonenc import GoMap, encode
from txcaddy.caddyfile.tlsapp import (
    AutomationPolicy,
    build_pki_app,
    build_tls_app,
    consolidate_automation_policies,
    hosts_from_keys,
    hosts_from_keys_not_http,
    listeners_use_any_port_other_than,
    match_wildcard,
    subject_is_ip,
    subject_qualifies_for_public_cert,
)


def helper(text: str, state: dict[str, Any] | None = None) -> Helper:
    return Helper(
        Dispenser.from_text(text),
        options={},
        warnings=[],
        matcher_defs={},
        parent_block=None,
        group_counter=GroupCounter(),
        state=state if state is not None else {},
    )


@dataclass
class Block:
    keys: list[Address]
    pile: dict[str, list[ConfigValue]] = field(default_factory=dict)


@dataclass
class Pairing:
    addresses: list[str]
    server_blocks: list[Block]


def block(*keys: str, pile: dict[str, list[Any]] | None = None) -> Block:
    values = {name: [ConfigValue(name, v) for v in vs] for name, vs in (pile or {}).items()}
    return Block([Address.parse(k).normalize() for k in keys], values)


class TLSDirectiveTests(SynchronousTestCase):
    def test_classes_in_caddy_order(self) -> None:
        """tls values come in Caddy's order: loaders, key type, on_demand, the connection policy."""
        values = parse_tls(helper("tls a.pem a.key {\n on_demand\n key_type p256\n load /d\n}"))
        self.assertEqual(
            [v.klass for v in values],
            ["tls.cert_loader", "tls.cert_loader", "tls.key_type", "tls.on_demand", "tls.connection_policy"],
        )
        self.assertIsInstance(values[0].value, FileLoader)
        self.assertEqual(values[-1].value.cert_selection, CertSelection(any_tag=["cert0"]))

    def test_cert_tags_shared_through_state(self) -> None:
        """A certificate pair loaded twice keeps its tag; a new pair gets the next tag."""
        state: dict[str, Any] = {}
        first = parse_tls(helper("tls a.pem a.key", state))
        second = parse_tls(helper("tls a.pem a.key", state))
        third = parse_tls(helper("tls b.pem b.key", state))
        self.assertEqual(len(first), 2)
        self.assertEqual([v.klass for v in second], ["tls.connection_policy"])
        self.assertEqual(second[0].value.cert_selection.any_tag, ["cert0"])
        self.assertEqual(third[0].value[0]["tags"], ["cert1"])

    def test_email_shares_one_acme_issuer(self) -> None:
        """tls with an email makes an ACME issuer and a ZeroSSL issuer wrapping that same one."""
        values = parse_tls(helper("tls me@example.com"))
        acme, zerossl = values[0].value, values[1].value
        self.assertIsInstance(zerossl, ZeroSSLIssuer)
        self.assertIs(zerossl.acme, acme)

    def test_connection_policy_json_and_settings(self) -> None:
        """A connection policy with settings is no longer empty and encodes only what is set."""
        policy = ConnectionPolicy()
        self.assertTrue(policy.settings_empty())
        policy.alpn = ["h2"]
        policy.default_sni = "x"
        self.assertFalse(policy.settings_empty())
        self.assertEqual(encode(policy), '{"alpn":["h2"],"default_sni":"x"}')

    def test_cert_selection_merge(self) -> None:
        """Selections with any_tag only are compatible and merge tags without duplicates."""
        a, b = CertSelection(any_tag=["cert0"]), CertSelection(any_tag=["cert0", "cert1"])
        self.assertTrue(a.compatible_with(b))
        a.merge_any_tags(b)
        self.assertEqual(a.any_tag, ["cert0", "cert1"])
        self.assertFalse(a.compatible_with(CertSelection(all_tags=["x"])))

    def test_first_pem_block(self) -> None:
        """first_pem_block decodes the first PEM block after any junk; no block gives None."""
        data = b"junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n"
        self.assertEqual(first_pem_block(data), ("CERTIFICATE", b"\x00\x01\x02\x03"))
        self.assertIsNone(first_pem_block(b"no pem here"))


class SubjectTests(SynchronousTestCase):
    def test_public_and_internal_names(self) -> None:
        """Only public DNS names qualify for a public certificate; local names and IPs do not."""
        self.assertTrue(subject_qualifies_for_public_cert("example.com"))
        self.assertTrue(subject_qualifies_for_public_cert("*.example.com"))
        for name in ("localhost", "a.localhost", "box.local", "10.0.0.1", "::1", "*.*.tld", "*.com"):
            self.assertFalse(subject_qualifies_for_public_cert(name), name)

    def test_ip_like_go(self) -> None:
        """subject_is_ip accepts what Go's net.ParseIP does: no zone, no leading zeros."""
        self.assertTrue(subject_is_ip("::1"))
        self.assertFalse(subject_is_ip("fe80::1%eth0"))
        self.assertFalse(subject_is_ip("010.0.0.1"))

    def test_wildcards(self) -> None:
        """match_wildcard is case-insensitive and a wildcard covers one label only."""
        self.assertTrue(match_wildcard("a.example.com", "*.example.com"))
        self.assertTrue(match_wildcard("A.Example.com", "a.example.COM"))
        self.assertFalse(match_wildcard("a.b.example.com", "*.example.com"))

    def test_listener_ports(self) -> None:
        """listeners_use_any_port_other_than sees other ports; a range holding the port is none."""
        self.assertFalse(listeners_use_any_port_other_than([":80", "10.0.0.1:80"], "80"))
        self.assertTrue(listeners_use_any_port_other_than([":80", ":443"], "80"))
        self.assertFalse(listeners_use_any_port_other_than([":80-90"], "85"))


class HostsTests(SynchronousTestCase):
    def test_hosts_from_keys(self) -> None:
        """hosts_from_keys gives each host once, with its port if asked; catch-alls give none."""
        b = block("b.example.com", "a.example.com:8443", "b.example.com:80")
        self.assertEqual(hosts_from_keys(b), ["b.example.com", "a.example.com"])
        self.assertEqual(hosts_from_keys(b, True), ["b.example.com", "a.example.com:8443"])
        self.assertEqual(hosts_from_keys(block("a.example.com", ":443")), [])
        self.assertEqual(hosts_from_keys(block("a.example.com", ":443"), True), ["a.example.com"])

    def test_hosts_not_http(self) -> None:
        """hosts_from_keys_not_http leaves out http:// sites and those on the HTTP port."""
        b = block("http://a.example.com", "b.example.com:80", "c.example.com", ":443")
        self.assertEqual(hosts_from_keys_not_http(b, "80"), ["c.example.com"])


class TLSAppTests(SynchronousTestCase):
    def test_nothing_to_say(self) -> None:
        """Sites on the HTTP port alone need no tls app."""
        pairings = [Pairing([":80"], [block(":80")])]
        self.assertIsNone(build_tls_app(pairings, {}, []))

    def test_issuers_shared_between_policies_get_one_bind_host(self) -> None:
        """An issuer shared by two policies gets the bind host once; its policies merge."""
        issuer = ACMEIssuer(email="a@example.com")
        sites = block(
            "example.com",
            "example.com:8443",
            pile={"tls.cert_issuer": [issuer], "bind": [["10.0.0.1"]]},
        )
        pairings = [Pairing([":443"], [sites]), Pairing([":8443"], [sites])]
        app = build_tls_app(pairings, {}, [])
        assert issuer.challenges is not None
        self.assertEqual(issuer.challenges.bind_host, "10.0.0.1")
        self.assertEqual(
            encode(app),
            '{"automation":{"policies":[{"subjects":["example.com"],"issuers":'
            '[{"challenges":{"bind_host":"10.0.0.1"},"email":"a@example.com","module":"acme"}]}]}}',
        )

    def test_consolidation_merges_and_drops(self) -> None:
        """Policies with equal issuers merge subjects; an empty one for a local name is dropped."""
        internal = [GoMap(module="internal")]
        aps = [
            AutomationPolicy(subjects=["a.example.com"], issuers_raw=list(internal)),
            AutomationPolicy(subjects=["b.example.com"], issuers_raw=list(internal)),
            AutomationPolicy(subjects=["localhost"]),
            AutomationPolicy(subjects=["c.example.com"]),
        ]
        result = consolidate_automation_policies(aps)
        assert result is not None
        self.assertEqual(
            [(ap.subjects, ap.issuers_raw) for ap in result],
            [(["a.example.com", "b.example.com"], internal), (["c.example.com"], None)],
        )

    def test_all_empty_policies_vanish(self) -> None:
        """When every automation policy is empty, there is no automation at all."""
        self.assertIsNone(consolidate_automation_policies([AutomationPolicy(subjects=["a.b"])]))


class PKIAppTests(SynchronousTestCase):
    def test_acme_server_cas_and_skip_install_trust(self) -> None:
        """acme_server's authorities join the pki app; skip_install_trust applies to each."""
        pki = PKI({"local": CertificateAuthority(id="local", name="L")})
        pairings = [Pairing([":443"], [block("a.example.com", pile={"pki.ca": [CertificateAuthority(id="x"), "local"]})])]
        app = build_pki_app(pairings, {"pki": pki, "skip_install_trust": True}, [])
        self.assertEqual(
            encode(app),
            '{"certificate_authorities":{"local":{"name":"L","install_trust":false},'
            '"x":{"install_trust":false}}}',
        )

    def test_skip_install_trust_alone_adds_local(self) -> None:
        """skip_install_trust alone configures the local authority; no option, no pki app."""
        app = build_pki_app([], {"skip_install_trust": True}, [])
        self.assertEqual(encode(app), '{"certificate_authorities":{"local":{"install_trust":false}}}')
        self.assertIsNone(build_pki_app([], {}, []))

    def test_internal_issuer_json(self) -> None:
        """An internal issuer encodes its fields with module "internal", keys sorted."""
        from txcaddy.caddyfile.directives.tls import issuer_json

        self.assertEqual(
            encode(issuer_json(InternalIssuer(ca="x", lifetime=1, sign_with_root=True))),
            '{"ca":"x","lifetime":1,"module":"internal","sign_with_root":true}',
        )
