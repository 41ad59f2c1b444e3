"""``apps.tls`` at run time: the certificate cache, the automation plan, the servers' TLS.

The service builds one ``TLSApp`` per config.  It loads the certificates the config names
(``certificates.load_files``/``load_pem``/``load_folders``) into the cache, takes automatic
HTTPS phase 1's result (which names to manage, with which automation policies), and makes the
``ServerTLS`` connection creator for each server with TLS listeners.  The certificate manager
(``txcaddy.tls.manager``) fills the same cache with managed certificates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.protocols.tls import TLSMemoryBIOFactory

from txcaddy.errors import ConfigError
from txcaddy.tls.autohttps import AutoHTTPSPlan, plan
from txcaddy.tls.certificates import Certificate, CertificateCache, load_certificates
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.context import ServerTLS, load_connection_policies

__all__ = ["TLSApp"]

_FIELDS = frozenset((
    "certificates", "automation", "session_tickets", "cache", "disable_ocsp_stapling",
))


@dataclass
class TLSApp:
    """The TLS app of one loaded config.

    @ivar cache: every certificate a handshake can use (loaded and managed).
    @ivar loaded: the certificates loaded from the config (files, PEM, folders).
    @ivar config: the ``tls`` app's JSON after automatic HTTPS phase 1.
    @ivar managed: the names whose certificates are obtained and renewed, in config order.
    @ivar challenges: the ACME challenges being answered (HTTP-01 by the servers, TLS-ALPN-01
        in the handshake).
    """

    cache: CertificateCache = field(default_factory=CertificateCache)
    loaded: list[Certificate] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    managed: list[str] = field(default_factory=list)
    challenges: Challenges = field(default_factory=Challenges)
    servers: dict[str, ServerTLS] = field(default_factory=dict)

    @classmethod
    def load(cls, config: dict[str, Any] | None, challenges: Challenges | None = None) -> TLSApp:
        """Check the ``tls`` app's JSON and load the certificates it names."""
        config = config or {}
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise ConfigError(f"apps.tls: unknown field {unknown[0]!r}")
        app = cls(config=dict(config), challenges=challenges or Challenges())
        app.loaded = load_certificates(config.get("certificates"))
        for certificate in app.loaded:
            app.cache.add(certificate)
        return app

    def plan_http(self, http: dict[str, Any] | None) -> AutoHTTPSPlan:
        """Run automatic HTTPS phase 1 for the ``http`` app; remember what it decided."""
        result = plan(http, self.config, lambda name: bool(self.cache.all_matching(name)))
        self.config = result.tls
        automate = (self.config.get("certificates") or {}).get("automate") or ()
        self.managed = list(dict.fromkeys([*result.managed, *automate]))
        return result

    def server_tls(self, name: str, server: dict[str, Any], *, http2: bool = False) -> ServerTLS:
        """The connection creator for server ``name``'s TLS listeners (one per server)."""
        creator = self.servers.get(name)
        if creator is None:
            policies = load_connection_policies(server.get("tls_connection_policies"), f"apps.http.servers.{name}")
            creator = ServerTLS(policies, self.cache, http2=http2, challenges=self.challenges.tls_alpn01_certificate)
            self.servers[name] = creator
        return creator

    def wrap(self, name: str, server: dict[str, Any], factory: Any) -> TLSMemoryBIOFactory:
        """``factory`` (plain HTTP) behind TLS with server ``name``'s policies."""
        return TLSMemoryBIOFactory(self.server_tls(name, server), False, factory)
