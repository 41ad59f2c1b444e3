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

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorTime

from txcaddy._twisted import TLSServerFactory
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
    Obj,
    Spec,
)
from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ICertificateIssuer, IStorage
from txcaddy.tls.autohttps import AutoHTTPSPlan, default_issuers, plan
from txcaddy.tls.certificates import Certificate, CertificateCache, load_certificates
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.context import ServerTLS, load_connection_policies
from txcaddy.tls.internalca import (
    InternalIssuer,
    PKIApp,
    PKIService,
    load_internal_issuer,
    load_pki_app,
    threaded_trust_installer,
)
from txcaddy.tls.keys import KEY_TYPES
from txcaddy.tls.manager import (
    DEFAULT_RENEW_INTERVAL,
    DEFAULT_RENEWAL_WINDOW_RATIO,
    AutomationPolicy,
    CertificateManager,
)
from txcaddy.tls.ondemand import OnDemandConfig, OnDemandGateFactory
from txcaddy.tls.storage import storage_from_config

__all__ = ["TLSApp", "load_automation_policies", "load_issuer"]

_CHALLENGE = Obj({"disabled": BOOL, "alternate_port": INT})
_ACME_ISSUER = Obj(
    {
        "ca": STRING, "test_ca": STRING, "email": STRING, "account_key": STRING,
        "external_account": Obj({"key_id": STRING, "mac_key": STRING}),
        "acme_timeout": DURATION,
        "challenges": Obj({"http": _CHALLENGE, "tls-alpn": _CHALLENGE, "dns": ANY, "bind_host": STRING}),
        "trusted_roots_pem_files": STRINGS,
        "preferred_chains": Obj({"smallest": BOOL, "root_common_name": STRINGS, "any_common_name": STRINGS}),
    },
    name="caddytls.ACMEIssuer",
)
_ISSUERS: dict[str, Spec] = {
    "acme": _ACME_ISSUER,
    "zerossl": Obj({**_ACME_ISSUER.fields, "api_key": STRING}),
    "internal": Obj({"ca": STRING, "lifetime": DURATION, "sign_with_root": BOOL}),
}
_CERTIFICATE_FILE = Obj({"certificate": STRING, "key": STRING, "format": STRING, "tags": STRINGS})

#: ``apps.tls`` (``caddytls.TLS``).
TLS_APP: Spec = Obj(
    {
        "certificates": Obj(
            {"load_files": ListOf(_CERTIFICATE_FILE), "load_pem": ListOf(_CERTIFICATE_FILE),
             "load_folders": STRINGS, "automate": STRINGS, "load_storage": ANY}
        ),
        "automation": Obj(
            {
                "policies": ListOf(Obj(
                    {"subjects": STRINGS, "issuers": ListOf(Module("tls.issuance", "module", _ISSUERS)),
                     "get_certificate": ListOf(ANY), "must_staple": BOOL, "renewal_window_ratio": NUMBER,
                     "key_type": STRING, "storage": ANY, "on_demand": BOOL, "disable_ocsp_stapling": BOOL,
                     "ocsp_overrides": MapOf(STRING)},
                    strict=True, name="caddytls.AutomationPolicy",
                )),
                "on_demand": Obj({"rate_limit": Obj({"interval": DURATION, "burst": INT}), "ask": STRING}),
                "ocsp_interval": DURATION,
                "renew_interval": DURATION,
                "storage_clean_interval": DURATION,
            },
        ),
        "session_tickets": ANY,
        "cache": Obj({"capacity": INT}),
        "disable_ocsp_stapling": BOOL,
    },
    strict=True, name="caddytls.TLS",
)

#: ``apps.pki`` (``caddypki.PKI``).
_KEY_PAIR = Obj({"certificate": STRING, "private_key": STRING, "format": STRING})
PKI_APP: Spec = Obj(
    {"certificate_authorities": MapOf(Obj(
        {"name": STRING, "root_common_name": STRING, "intermediate_common_name": STRING,
         "intermediate_lifetime": DURATION, "install_trust": BOOL, "root": _KEY_PAIR, "intermediate": _KEY_PAIR,
         "storage": ANY},
        name="caddypki.CA",
    ))},
    name="caddypki.PKI",
)

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
    pki: PKIApp | None = None
    manager: CertificateManager | None = None
    on_demand: OnDemandConfig | None = None

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

    def services(
        self, storage: IStorage, pki_config: dict[str, Any] | None, clock: IReactorTime, reactor: Any
    ) -> list[Service]:
        """The services that keep certificates: the PKI app when used, then the manager.

        The manager starts after the listeners (its parent adds it last), as Caddy's phase 2.
        """
        automation = self.config.get("automation") or {}
        self.pki = load_pki_app(pki_config, clock)
        policies = load_automation_policies(
            automation.get("policies"), storage=storage, pki=self.pki, challenges=self.challenges,
            clock=clock, reactor=reactor)
        services: list[Service] = []
        pki_service: PKIService | None = None
        # Caddy's rule: the PKI app runs when the config has one or the internal issuer is used
        # (load_pki_app always knows the default CA, so that alone says nothing).
        if pki_config is not None or any(isinstance(i, InternalIssuer) for p in policies for i in p.issuers):
            pki_service = PKIService(self.pki, storage, clock, threaded_trust_installer(reactor))
            services.append(pki_service)
        renew = duration_seconds(automation.get("renew_interval"), "apps.tls.automation.renew_interval")
        self.manager = CertificateManager(
            self.cache, storage, policies, self.managed, clock,
            renew_interval=renew or DEFAULT_RENEW_INTERVAL,
            wait_for=(lambda: pki_service.ready) if pki_service is not None else None,
        )
        services.append(self.manager)
        if self.uses_on_demand():
            self.on_demand = OnDemandConfig(automation.get("on_demand"), clock, reactor)
        return services

    def adopt_certificates(self, old: TLSApp) -> None:
        """Take the managed certificates ``old`` (the running config's app) holds for names this
        app manages (all of them with on-demand TLS), so that handshakes after a reload find them
        at once, before this app's manager has looked at the storage (certmagic's cache is shared
        by every config for the same reason)."""
        wanted = set(self.managed)
        every = self.uses_on_demand()
        for certificate in old.cache:
            if certificate.managed and (every or wanted.intersection(certificate.names)):
                self.cache.add(certificate)

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

    def wrap(self, name: str, server: dict[str, Any], factory: Any, *, http2: bool = False) -> IProtocolFactory:
        """``factory`` (plain HTTP) behind TLS with server ``name``'s policies (and, when a
        policy says ``on_demand``, behind a gate that gets certificates during handshakes);
        ``http2`` offers ``h2`` first in ALPN (``factory`` must then serve it)."""
        tls = TLSServerFactory(self.server_tls(name, server, http2=http2), False, factory)
        if not self.uses_on_demand():
            return tls
        return OnDemandGateFactory(tls, self.prepare_on_demand)

    def uses_on_demand(self) -> bool:
        policies = (self.config.get("automation") or {}).get("policies") or ()
        return any(policy.get("on_demand") for policy in policies)

    def prepare_on_demand(self, name: str) -> Deferred[Any] | None:
        """What a handshake for ``name`` waits for: None, or an on-demand order (see ``ondemand``)."""
        manager, on_demand = self.manager, self.on_demand
        if manager is None or on_demand is None or self.cache.matching(name) is not None:
            return None
        try:
            policy = manager.policy_for(name)
        except LookupError:
            return None
        if not policy.on_demand:
            return None
        return manager.obtain_on_demand(name, on_demand.allowed)


_POLICY_FIELDS = frozenset((
    "subjects", "issuers", "get_certificate", "must_staple", "renewal_window_ratio", "key_type",
    "storage", "on_demand", "disable_ocsp_stapling", "ocsp_overrides",
))


def load_automation_policies(
    config: list[dict[str, Any]] | None,
    *,
    storage: IStorage,
    pki: PKIApp,
    challenges: Challenges,
    clock: IReactorTime,
    reactor: Any,
) -> list[AutomationPolicy]:
    """``apps.tls.automation.policies`` (after phase 1) with their issuers made."""
    policies = []
    for i, entry in enumerate(config or ()):
        where = f"apps.tls.automation.policies[{i}]"
        unknown = sorted(set(entry) - _POLICY_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        if entry.get("get_certificate"):
            raise ConfigError(f"{where}.get_certificate: certificate managers are not supported by txcaddy")
        key_type = entry.get("key_type") or "p256"
        if key_type not in KEY_TYPES:
            raise ConfigError(f"{where}.key_type: unrecognized key type: {key_type}")
        ratio = float(entry.get("renewal_window_ratio") or 0) or DEFAULT_RENEWAL_WINDOW_RATIO
        if not 0 < ratio < 1:
            raise ConfigError(f"{where}.renewal_window_ratio: must be between 0 and 1")
        issuers_config = entry.get("issuers")
        if issuers_config is None:
            issuers_config = default_issuers()
        issuers = [
            load_issuer(issuer, storage=storage, pki=pki, challenges=challenges, clock=clock,
                        reactor=reactor, where=f"{where}.issuers[{j}]")
            for j, issuer in enumerate(issuers_config)
        ]
        policy_storage = storage_from_config(entry["storage"], clock) if entry.get("storage") else None
        policies.append(AutomationPolicy(
            subjects=list(entry.get("subjects") or ()), issuers=issuers, key_type=key_type,
            renewal_window_ratio=ratio, on_demand=bool(entry.get("on_demand")), storage=policy_storage,
        ))
    return policies


def load_issuer(
    config: dict[str, Any], *, storage: IStorage, pki: PKIApp, challenges: Challenges, clock: IReactorTime,
    reactor: Any, where: str,
) -> ICertificateIssuer:
    """One ``tls.issuance`` module: ``internal`` (the local CA), ``acme``, ``zerossl``."""
    module = config.get("module") if isinstance(config, dict) else None
    if module == "internal":
        return load_internal_issuer(config, pki, clock, where)
    if module in ("acme", "zerossl"):
        # Imported here, not at the top: certbot's acme library (with josepy and requests)
        # adds 13 MB of RSS and 20,000 objects to every process, measured; a config that
        # manages no public name never needs it.
        from txcaddy.tls import acme

        loader = acme.load_acme_issuer if module == "acme" else acme.load_zerossl_issuer
        return loader(config, storage=storage, challenges=challenges, reactor=reactor, where=where)
    raise ConfigError(f"{where}: unknown module: tls.issuance.{module}")
