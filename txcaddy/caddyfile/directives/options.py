"""Global options (the key-less first block): Caddy's options.go and pkiapp.go.

Each option function gets a Dispenser over the option's tokens (the option
name first) and the option's previous value, and returns the new value that
the server-type code stores in ``options[name]``. Values are plain Python
data (ints for ports, nanoseconds for durations, lists, dicts in Caddy's
JSON field order) or the small classes below where later code needs more
than JSON: issuers, ``PKI``, ``OCSPConfig``, ``App``. The ``servers`` option
(Caddy's serveroptions.go) is in ``serveroptions.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.strconv import NumError, atoi
from txcaddy.caddyfile import registry
from txcaddy.caddyfile.directives._unmarshal import ModuleParser, unmarshal_module
from txcaddy.caddyfile.directives.logging import parse_log_option
from txcaddy.caddyfile.directives.tls import (
    DNS_PROVIDERS,
    EAB,
    ChainPreference,
    Issuer,
    parse_issuer_module,
    parse_preferred_chains,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import App, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, ModuleObject, module_object
from txcaddy.caddyfile.registry import global_option
from txcaddy.config.values import parse_caddy_duration
from txcaddy.tls.redisstorage import parse_caddyfile as parse_redis_storage

DEFAULT_ADMIN_LISTEN = "localhost:2019"
DEFAULT_CA_ID = "local"


def _duration(text: str) -> int:
    """caddy.ParseDuration, failing with Go's bare error text as Caddy does."""
    try:
        return parse_caddy_duration(text)
    except ValueError as e:
        raise ConfigError(str(e))


@global_option("debug")
@global_option("local_certs")
@global_option("skip_install_trust")
def parse_opt_true(d: Dispenser, existing: Any) -> bool:
    return True


def _parse_port(d: Dispenser, existing: Any) -> int:
    port = 0
    while d.next():
        args = d.all_args(1)
        if args is None:
            raise d.arg_err()
        try:
            port = atoi(args[0])
        except NumError as e:
            raise d.err(f"converting port '{args[0]}' to integer value: {e}") from None
    return port


registry.register_global_option("http_port", _parse_port)
registry.register_global_option("https_port", _parse_port)


@global_option("default_bind")
def parse_opt_string_list(d: Dispenser, existing: Any) -> list[str]:
    d.next()
    values = d.remaining_args()
    if not values:
        raise d.arg_err()
    return values


@global_option("grace_period")
@global_option("shutdown_delay")
@global_option("storage_clean_interval")
@global_option("renew_interval")
@global_option("ocsp_interval")
def parse_opt_duration(d: Dispenser, existing: Any) -> int:
    if not d.next() or not d.next():
        raise d.arg_err()
    return _duration(d.val())


@global_option("default_sni")
@global_option("acme_ca")
@global_option("acme_ca_root")
@global_option("email")
@global_option("key_type")
def parse_opt_single_string(d: Dispenser, existing: Any) -> str:
    d.next()
    if not d.next():
        raise d.arg_err()
    value = d.val()
    if d.next():
        raise d.arg_err()
    return value


@global_option("workers")
def parse_opt_workers(d: Dispenser, existing: Any) -> int | str:
    """``workers <n>|auto``: txcaddy's worker processes (Caddy has no such option)."""
    from txcaddy._workers import parse_workers

    d.next()
    if not d.next():
        raise d.arg_err()
    value = d.val()
    if d.next():
        raise d.arg_err()
    if value == "auto":
        return value
    try:
        parse_workers(value)
    except ConfigError as e:
        raise d.err(str(e)) from None
    return int(value)


@global_option("order")
def parse_opt_order(d: Dispenser, existing: Any) -> list[str]:
    """``order <directive> first|last|before <other>|after <other>``.

    Starts from the order so far (``existing``, or Caddy's default order) and
    returns the new list; nothing global changes.
    """
    order = list(existing) if existing is not None else list(registry.DEFAULT_DIRECTIVE_ORDER)
    while d.next():
        if not d.next():
            raise d.arg_err()
        name = d.val()
        if name not in registry.DIRECTIVES:
            raise d.err(f"{name} is not a registered directive")
        if not d.next():
            raise d.arg_err()
        position = d.val()
        if name in order:
            order.remove(name)
        if position in ("first", "last"):
            if position == "first":
                order.insert(0, name)
            else:
                order.append(name)
            if d.next_arg():
                raise d.arg_err()
            return order
        if position not in ("before", "after"):
            raise d.err(f"unknown positional '{position}'")
        if not d.next_arg():
            raise d.arg_err()
        other = d.val()
        if d.next_arg():
            raise d.arg_err()
        if other in order:
            index = order.index(other)
            order.insert(index if position == "before" else index + 1, name)
    return order


def _parse_file_storage(d: Dispenser) -> JSONObject:
    if not d.next():
        raise d.err("expected tokens")
    root = ""
    if d.next_arg():
        root = d.val()
    if d.next_arg():
        raise d.arg_err()
    nesting = d.nesting
    while d.next_block(nesting):
        if d.val() != "root":
            raise d.err(f"unrecognized parameter '{d.val()}'")
        if not d.next_arg():
            raise d.arg_err()
        if root:
            raise d.err("root already set")
        root = d.val()
        if d.next_arg():
            raise d.arg_err()
    if not root:
        raise d.err("missing root path (to use default, omit storage config entirely)")
    return {"root": root}


STORAGE_MODULES = {"file_system": _parse_file_storage, "redis": parse_redis_storage}


def _module_option(
    d: Dispenser, namespace: str, parsers: Mapping[str, ModuleParser], inline_key: str
) -> ModuleObject:
    """``<option> <module> ...``: the named module's own Caddyfile syntax, as a module object."""
    if not d.next() or not d.next():
        raise d.arg_err()
    name = d.val()
    return module_object(unmarshal_module(d, namespace, name, parsers), inline_key, name)


@global_option("storage")
def parse_opt_storage(d: Dispenser, existing: Any) -> GoMap:
    """The config's ``storage`` JSON (a module object, so its keys are sorted)."""
    return _module_option(d, "caddy.storage", STORAGE_MODULES, "module")


def storage_json(value: Any) -> GoMap | None:
    """The config's ``storage`` JSON from the ``storage`` option's value (None if unset)."""
    return value if isinstance(value, GoMap) else None


@global_option("acme_dns")
def parse_opt_acme_dns(d: Dispenser, existing: Any) -> GoMap:
    return _module_option(d, "dns.providers", DNS_PROVIDERS, "name")


@global_option("acme_eab")
def parse_opt_acme_eab(d: Dispenser, existing: Any) -> EAB:
    eab = EAB()
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            option = d.val()
            if option not in ("key_id", "mac_key"):
                raise d.err(f"unrecognized parameter '{option}'")
            if not d.next_arg():
                raise d.arg_err()
            setattr(eab, option, d.val())
    return eab


@global_option("cert_issuer")
def parse_opt_cert_issuer(d: Dispenser, existing: Any) -> list[Issuer]:
    """Each ``cert_issuer`` line adds an issuer to the global list."""
    issuers: list[Issuer] = list(existing or ())
    while d.next():
        if not d.next():
            raise d.arg_err()
        issuers.append(parse_issuer_module(d, d.val()))
    return issuers


@global_option("admin")
def parse_opt_admin(d: Dispenser, existing: Any) -> JSONObject:
    """The config's ``admin`` object (caddy.AdminConfig field order)."""
    disabled = False
    listen = ""
    enforce_origin = False
    origins: list[str] = []
    while d.next():
        if d.next_arg():
            address = d.val()
            if address == "off":
                disabled = True
                if d.next():
                    raise d.err("No more option is allowed after turning off admin config")
            else:
                listen = address
                if d.next_arg():
                    raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            option = d.val()
            if option == "enforce_origin":
                enforce_origin = True
            elif option == "origins":
                origins = d.remaining_args()
            else:
                raise d.err(f"unrecognized parameter '{option}'")
    if not listen and not disabled:
        listen = DEFAULT_ADMIN_LISTEN
    out: JSONObject = {}
    if disabled:
        out["disabled"] = True
    if listen:
        out["listen"] = listen
    if enforce_origin:
        out["enforce_origin"] = True
    if origins:
        out["origins"] = origins
    return out


def admin_json(value: Any) -> JSONObject | None:
    """The config's ``admin`` JSON from the ``admin`` option's value (None if unset)."""
    return dict(value) if value is not None else None


@global_option("on_demand_tls")
def parse_opt_on_demand(d: Dispenser, existing: Any) -> JSONObject:
    """The tls app's ``automation.on_demand`` object."""
    ask: str | None = None
    rate_limit: dict[str, int] | None = None
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            option = d.val()
            if option == "ask":
                if not d.next_arg():
                    raise d.arg_err()
                ask = d.val()
            elif option == "interval":
                if not d.next_arg():
                    raise d.arg_err()
                interval = _duration(d.val())
                if ask is None:
                    ask = ""
                rate_limit = rate_limit or {}
                rate_limit["interval"] = interval
            elif option == "burst":
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    burst = atoi(d.val())
                except NumError as e:
                    raise ConfigError(str(e)) from None
                if ask is None:
                    ask = ""
                rate_limit = rate_limit or {}
                rate_limit["burst"] = burst
            else:
                raise d.err(f"unrecognized parameter '{option}'")
    if ask is None:
        raise d.err("expected at least one config parameter for on_demand_tls")
    out: JSONObject = {}
    if rate_limit is not None:
        limit: JSONObject = {}
        if rate_limit.get("interval"):
            limit["interval"] = rate_limit["interval"]
        if rate_limit.get("burst"):
            limit["burst"] = rate_limit["burst"]
        out["rate_limit"] = limit
    if ask:
        out["ask"] = ask
    return out


AUTO_HTTPS_VALUES = ("off", "disable_redirects", "disable_certs", "ignore_loaded_certs")


@global_option("auto_https")
def parse_opt_auto_https(d: Dispenser, existing: Any) -> str:
    value = parse_opt_single_string(d, existing)
    if value not in AUTO_HTTPS_VALUES:
        raise d.err(
            "auto_https must be one of 'off', 'disable_redirects', 'disable_certs', "
            "or 'ignore_loaded_certs'"
        )
    return value


@dataclass
class OCSPConfig:
    """certmagic.OCSPConfig as far as the Caddyfile sets it."""

    disable_stapling: bool = False
    responder_overrides: dict[str, str] | None = None


@global_option("ocsp_stapling")
def parse_opt_ocsp_stapling(d: Dispenser, existing: Any) -> OCSPConfig:
    d.next()
    args = d.all_args(1)
    if args is None:
        raise d.arg_err()
    if args[0] != "off":
        raise d.err(f"invalid argument '{args[0]}'")
    return OCSPConfig(disable_stapling=True)


@global_option("preferred_chains")
def parse_opt_preferred_chains(d: Dispenser, existing: Any) -> ChainPreference:
    d.next()
    return parse_preferred_chains(d)


registry.register_global_option("log", parse_log_option)


# -- pki ---------------------------------------------------------------------


@dataclass
class KeyPair:
    certificate: str = ""
    private_key: str = ""
    format: str = ""

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        for key in ("certificate", "private_key", "format"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass
class CertificateAuthority:
    """caddypki.CA; ``acme_server`` directives produce these as ``pki.ca`` values."""

    id: str = ""
    name: str = ""
    root_common_name: str = ""
    intermediate_common_name: str = ""
    install_trust: bool | None = None
    root: KeyPair | None = None
    intermediate: KeyPair | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        for key in ("name", "root_common_name", "intermediate_common_name"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.install_trust is not None:
            out["install_trust"] = self.install_trust
        if self.root is not None:
            out["root"] = self.root.to_json()
        if self.intermediate is not None:
            out["intermediate"] = self.intermediate.to_json()
        return out


@dataclass
class PKI:
    """The pki app: certificate authorities by ID."""

    cas: dict[str, CertificateAuthority] = field(default_factory=dict)

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.cas:
            out["certificate_authorities"] = GoMap(
                (ca_id, ca.to_json()) for ca_id, ca in self.cas.items()
            )
        return out


def _parse_key_pair(d: Dispenser, pair: KeyPair, which: str) -> None:
    fields = {"cert": "certificate", "key": "private_key", "format": "format"}
    nesting = d.nesting
    while d.next_block(nesting):
        option = d.val()
        if option not in fields:
            raise d.err(f"unrecognized pki ca {which} option '{option}'")
        if not d.next_arg():
            raise d.arg_err()
        setattr(pair, fields[option], d.val())


@global_option("pki")
def parse_pki(d: Dispenser, existing: Any) -> PKI:
    """``pki { ca [<id>] { name, root_cn, intermediate_cn, root {...}, intermediate {...} } }``."""
    pki = PKI()
    while d.next():
        nesting = d.nesting
        while d.next_block(nesting):
            if d.val() != "ca":
                raise d.err(f"unrecognized pki option '{d.val()}'")
            ca = CertificateAuthority()
            if d.next_arg():
                ca.id = d.val()
                if d.next_arg():
                    raise d.arg_err()
            if not ca.id:
                ca.id = DEFAULT_CA_ID
            inner = d.nesting
            while d.next_block(inner):
                option = d.val()
                if option in ("name", "root_cn", "intermediate_cn"):
                    if not d.next_arg():
                        raise d.arg_err()
                    attribute = {
                        "name": "name",
                        "root_cn": "root_common_name",
                        "intermediate_cn": "intermediate_common_name",
                    }[option]
                    setattr(ca, attribute, d.val())
                elif option == "root":
                    if ca.root is None:
                        ca.root = KeyPair()
                    _parse_key_pair(d, ca.root, "root")
                elif option == "intermediate":
                    if ca.intermediate is None:
                        ca.intermediate = KeyPair()
                    _parse_key_pair(d, ca.intermediate, "intermediate")
                else:
                    raise d.err(f"unrecognized pki ca option '{option}'")
            pki.cas[ca.id] = ca
    return pki


# -- events -------------------------------------------------------------------


# No events.handlers modules ship with Caddy 2.6.2.
EVENT_HANDLER_MODULES: dict[str, Any] = {}


@global_option("events")
def parse_events(d: Dispenser, existing: Any) -> App:
    """``events { on <event> <handler...> }`` (the events app)."""
    subscriptions: list[JSONObject] = []
    if not d.next():
        raise d.arg_err()
    while d.next_block(0):
        if d.val() != "on":
            raise d.arg_err()
        if not d.next_arg():
            raise d.arg_err()
        event = d.val()
        if event == "*":
            event = ""
        if not d.next_arg():
            raise d.arg_err()
        handler_name = d.val()
        handler = unmarshal_module(d, "events.handlers", handler_name, EVENT_HANDLER_MODULES)
        subscriptions.append(
            {
                "events": [event],
                "handlers": [module_object(handler, "handler", handler_name)],
            }
        )
    value: JSONObject = {}
    if subscriptions:
        value["subscriptions"] = subscriptions
    return App("events", value)
