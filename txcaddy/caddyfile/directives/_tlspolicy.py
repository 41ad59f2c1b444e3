"""The TLS connection policy a site's ``tls`` directive yields (caddytls' connpolicy.go).

``ConnectionPolicy`` with its certificate selection and client
authentication; the server-type code sets its matchers and merges policies
with the same matchers (``caddyfile._connpolicies``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from txcaddy.caddyfile.directives._tlsissuers import put
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap


@dataclass
class CertSelection:
    """caddytls.CustomCertSelectionPolicy (the Caddyfile only sets ``any_tag``)."""

    serial_number: list[Any] | None = None
    subject_organization: list[str] | None = None
    public_key_algorithm: str = ""
    any_tag: list[str] | None = None
    all_tags: list[str] | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "serial_number", self.serial_number)
        put(out, "subject_organization", self.subject_organization)
        put(out, "public_key_algorithm", self.public_key_algorithm)
        put(out, "any_tag", self.any_tag)
        put(out, "all_tags", self.all_tags)
        return out

    def compatible_with(self, other: CertSelection) -> bool:
        """Whether two selections can merge (Caddy merges only ``any_tag``)."""
        return (
            self.serial_number == other.serial_number
            and self.subject_organization == other.subject_organization
            and self.public_key_algorithm == other.public_key_algorithm
            and self.all_tags == other.all_tags
        )

    def merge_any_tags(self, other: CertSelection) -> None:
        for tag in other.any_tag or ():
            if tag not in (self.any_tag or ()):
                self.any_tag = (self.any_tag or []) + [tag]


@dataclass
class ClientAuthentication:
    trusted_ca_certs: list[str] | None = None
    trusted_ca_certs_pem_files: list[str] | None = None
    trusted_leaf_certs: list[str] | None = None
    verifiers: list[Any] | None = None
    mode: str = ""

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "trusted_ca_certs", self.trusted_ca_certs)
        put(out, "trusted_ca_certs_pem_files", self.trusted_ca_certs_pem_files)
        put(out, "trusted_leaf_certs", self.trusted_leaf_certs)
        put(out, "verifiers", self.verifiers)
        put(out, "mode", self.mode)
        return out


@dataclass
class ConnectionPolicy:
    """caddytls.ConnectionPolicy; ``matchers`` is the ``match`` module map."""

    matchers: GoMap | None = None
    cert_selection: CertSelection | None = None
    cipher_suites: list[str] | None = None
    curves: list[str] | None = None
    alpn: list[str] | None = None
    protocol_min: str = ""
    protocol_max: str = ""
    client_authentication: ClientAuthentication | None = None
    default_sni: str = ""
    insecure_secrets_log: str = ""

    def settings_empty(self) -> bool:
        """Go's SettingsEmpty: nothing but (maybe) matchers is set."""
        return (
            self.cert_selection is None
            and self.cipher_suites is None
            and self.curves is None
            and self.alpn is None
            and not self.protocol_min
            and not self.protocol_max
            and self.client_authentication is None
            and not self.default_sni
            and not self.insecure_secrets_log
        )

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "match", self.matchers)
        put(out, "certificate_selection", self.cert_selection)
        put(out, "cipher_suites", self.cipher_suites)
        put(out, "curves", self.curves)
        put(out, "alpn", self.alpn)
        put(out, "protocol_min", self.protocol_min)
        put(out, "protocol_max", self.protocol_max)
        put(out, "client_authentication", self.client_authentication)
        put(out, "default_sni", self.default_sni)
        put(out, "insecure_secrets_log", self.insecure_secrets_log)
        return out
