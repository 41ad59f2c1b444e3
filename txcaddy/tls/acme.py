"""The ``acme`` and ``zerossl`` issuers: certificates from an ACME CA (RFC 8555).

Follows Caddy 2.6.2 ``modules/caddytls/acmeissuer.go`` and ``zerosslissuer.go`` for the
config, and certmagic v0.17.2 (``acmeissuer.go``, ``acmeclient.go``, ``account.go``,
``solvers.go``) with acmez v1.0.4 for the behaviour:

* the issuer key (its directory under ``certificates/`` and ``acme/``) is the CA URL's host
  and path, ``acme-v02.api.letsencrypt.org-directory``;
* ``pre_check`` refuses names no public CA certifies (``localhost``, IPs, ``*.local``...) only
  when the CA is Let's Encrypt or ZeroSSL (their URL contains ``api.letsencrypt.org`` or
  ``acme.zerossl.com``); any other CA is asked for whatever the policy manages;
* the account is certmagic's: the key and registration are loaded from
  ``acme/<ca>/users/<email>/<local part>.key|.json`` (so accounts Caddy made are reused), or a
  P-256 key is made, registered (terms agreed, external account bound when configured) and
  stored there.  Without an ``email`` the most recently written account of that CA is used.
  ``account_key`` picks the stored account with that key, else asks the CA for it;
* an order is solved with HTTP-01 or TLS-ALPN-01, whichever is offered and enabled, the type
  that has succeeded most often in this process first (HTTP-01 on a tie; acmez starts in a
  random order); a validation that failed for a reason the other type might not meet
  (connection, dns, tls, unauthorized, serverInternal) is retried with a new order and the
  other type (up to 3 orders, as acmez); challenges are always withdrawn.  They are answered
  by txcaddy's own servers (HTTP-01 before the routes, TLS-ALPN-01 in the handshake) through
  the shared ``Challenges``, and when nothing listens on the challenge port (``alternate_port``,
  else 80/443, on ``bind_host``) the issuer listens there itself while it validates;
* authorizations and the finalized order are polled every 250 ms (or as Retry-After asks)
  for at most ``acme_timeout`` (5 minutes by default) each; orders are throttled to 10 per
  10 s per CA and account;
* on a retry (``attempt`` > 0) with a distinct ``test_ca`` (Let's Encrypt staging when the CA
  is Let's Encrypt production) the names are first validated against the test CA;
* the chain among the CA's alternates is picked by ``preferred_chains``; the metadata stored
  with the certificate (``issuer_data``) is acmez's ``acme.Certificate``: ``{"url": …}``.

The ACME exchange itself is certbot's blocking ``acme`` library (``_acmeclient``), each call
run in the reactor's thread pool; everything else (storage, challenges, timers) happens on the
reactor thread.  DNS-01 is not supported: a ``dns`` challenge config is refused.  Failures are
``ACMEError`` subclasses whose message names the names, the CA and the cause (the CA's problem
document when there is one).

This module is the public face (config loading and the names to import); the work is in
``_acmeissuer`` (orders, challenges, chains), ``_acmeaccount`` (accounts in storage),
``_acmesolvers`` (the TLS-ALPN-01 certificate, the solvers' listeners), ``_zerossl`` and
``_acmeclient`` (the blocking calls).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from txcaddy.config.placeholders import lookup, replace_all, template
from txcaddy.config.values import duration_seconds, string
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IStorage
from txcaddy.tls import _x509
from txcaddy.tls._acmeaccount import ACMEAccount, load_account, save_account
from txcaddy.tls._acmeerrors import (
    ACMEDirectoryError,
    ACMEError,
    ACMEProblemError,
    ACMETimeoutError,
    ChallengeFailedError,
    RateLimitedError,
)
from txcaddy.tls._acmeissuer import (
    _NO_REQUEST,
    DEFAULT_ACME_TIMEOUT,
    HTTP_CHALLENGE_PORT,
    LETS_ENCRYPT_PRODUCTION,
    LETS_ENCRYPT_STAGING,
    TLS_ALPN_CHALLENGE_PORT,
    ZEROSSL_PRODUCTION,
    ACMEIssuer,
    ChainPreference,
    ExternalAccount,
    IIssuingReactor,
    issuer_key_for,
    select_preferred_chain,
)
from txcaddy.tls._acmesolvers import tls_alpn01_certificate
from txcaddy.tls._zerossl import ZeroSSLIssuer
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.keys import load_private_key_pem

__all__ = [
    "DEFAULT_ACME_TIMEOUT",
    "HTTP_CHALLENGE_PORT",
    "LETS_ENCRYPT_PRODUCTION",
    "LETS_ENCRYPT_STAGING",
    "TLS_ALPN_CHALLENGE_PORT",
    "ZEROSSL_PRODUCTION",
    "ACMEAccount",
    "ACMEDirectoryError",
    "ACMEError",
    "ACMEIssuer",
    "ACMEProblemError",
    "ACMETimeoutError",
    "ChainPreference",
    "ChallengeFailedError",
    "ExternalAccount",
    "IIssuingReactor",
    "RateLimitedError",
    "ZeroSSLIssuer",
    "issuer_key_for",
    "load_account",
    "load_acme_issuer",
    "load_zerossl_issuer",
    "save_account",
    "select_preferred_chain",
    "tls_alpn01_certificate",
]



# -- config -----------------------------------------------------------------------------------

_ACME_FIELDS = frozenset((
    "module", "ca", "test_ca", "email", "account_key", "external_account", "acme_timeout", "challenges",
    "trusted_roots_pem_files", "preferred_chains",
))


def load_acme_issuer(config: Any, *, storage: IStorage, challenges: Challenges, reactor: IIssuingReactor,
                     where: str = "issuer") -> ACMEIssuer:
    """Read ``{"module": "acme", …}`` (Caddy's ``ACMEIssuer`` JSON); ``ConfigError`` names
    the bad field."""
    kwargs = _acme_kwargs(config, where, "acme", _ACME_FIELDS)
    return ACMEIssuer(storage=storage, challenges=challenges, reactor=reactor, **kwargs)


def load_zerossl_issuer(config: Any, *, storage: IStorage, challenges: Challenges, reactor: IIssuingReactor,
                        where: str = "issuer") -> ZeroSSLIssuer:
    """Read ``{"module": "zerossl", "api_key": …, <the acme issuer's fields>}``."""
    kwargs = _acme_kwargs(config, where, "zerossl", _ACME_FIELDS | {"api_key"})
    kwargs["api_key"] = string(config.get("api_key"), f"{where}.api_key")
    kwargs["ca"] = kwargs["ca"] or ZEROSSL_PRODUCTION
    return ZeroSSLIssuer(storage=storage, challenges=challenges, reactor=reactor, **kwargs)


def _acme_kwargs(config: Any, where: str, module: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    if config.get("module", module) != module:
        raise ConfigError(f"{where}.module: expected {module!r}, got {config.get('module')!r}")
    ca = string(config.get("ca"), f"{where}.ca")
    test_ca = string(config.get("test_ca"), f"{where}.test_ca")
    for name, url in (("ca", ca), ("test_ca", test_ca)):
        if url:
            _check_ca_url(url, f"{where}.{name}")
    kwargs: dict[str, Any] = {
        "ca": ca,
        "test_ca": test_ca or None,
        "email": _expand(string(config.get("email"), f"{where}.email"), f"{where}.email"),
        "account_key_pem": _expand(string(config.get("account_key"), f"{where}.account_key"), f"{where}.account_key"),
        "external_account": _external_account(config.get("external_account"), f"{where}.external_account"),
        "acme_timeout": duration_seconds(config.get("acme_timeout"), f"{where}.acme_timeout"),
        "trusted_roots_pem": _trusted_roots(config.get("trusted_roots_pem_files"), f"{where}.trusted_roots_pem_files"),
        "preferred_chains": _preferred_chains(config.get("preferred_chains"), f"{where}.preferred_chains"),
    }
    if kwargs["account_key_pem"]:
        try:
            load_private_key_pem(kwargs["account_key_pem"].encode())
        except ValueError as e:
            raise ConfigError(f"{where}.account_key: {e}") from None
    kwargs.update(_challenges(config.get("challenges"), f"{where}.challenges"))
    return kwargs


def _check_ca_url(url: str, where: str) -> None:
    """certmagic's ``newACMEClient`` rule: HTTPS unless the CA is on loopback or a private IP."""
    full = url if "://" in url else "https://" + url
    parts = urlsplit(full)
    host = parts.hostname or ""
    if parts.scheme == "https" or host == "localhost" or host == "::1" or host.startswith("127."):
        return
    address = _x509.parse_ip(host)
    if address is not None and address.is_private and not address.is_loopback:
        return
    raise ConfigError(f"{where}: {full}: insecure CA URL (HTTPS required)")


def _challenges(config: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if config is None:
        return out
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - {"http", "tls-alpn", "dns", "bind_host"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    if config.get("dns") is not None:
        raise ConfigError(f"{where}.dns: DNS-01 is not supported by txcaddy")
    for name, disable, port in (("http", "disable_http_challenge", "http_port"),
                                ("tls-alpn", "disable_tls_alpn_challenge", "tls_alpn_port")):
        challenge = config.get(name)
        if challenge is None:
            continue
        if not isinstance(challenge, dict):
            raise ConfigError(f"{where}.{name}: must be a JSON object")
        unknown = sorted(set(challenge) - {"disabled", "alternate_port"})
        if unknown:
            raise ConfigError(f'{where}.{name}: unknown field "{unknown[0]}"')
        disabled = challenge.get("disabled", False)
        if not isinstance(disabled, bool):
            raise ConfigError(f"{where}.{name}.disabled must be a boolean, got {disabled!r}")
        alternate = challenge.get("alternate_port", 0) or 0
        if isinstance(alternate, bool) or not isinstance(alternate, int) or not 0 <= alternate <= 65535:
            raise ConfigError(f"{where}.{name}.alternate_port must be a port number, got {alternate!r}")
        out[disable], out[port] = disabled, alternate
    out["bind_host"] = string(config.get("bind_host"), f"{where}.bind_host")
    return out


def _external_account(config: Any, where: str) -> ExternalAccount | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - {"key_id", "mac_key"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    key_id = string(config.get("key_id"), f"{where}.key_id")
    mac_key = string(config.get("mac_key"), f"{where}.mac_key")
    try:
        base64.urlsafe_b64decode(mac_key + "=" * (-len(mac_key) % 4))
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"{where}.mac_key: base64url-decoding MAC key: {e}") from None
    return ExternalAccount(key_id, mac_key)


def _trusted_roots(config: Any, where: str) -> bytes | None:
    """Caddy's ``Provision``: read each file now; one without a certificate is an error."""
    if not config:
        return None
    if not isinstance(config, list) or not all(isinstance(p, str) for p in config):
        raise ConfigError(f"{where}: must be a list of file names")
    pems: list[bytes] = []
    for path in config:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"{where}: loading trusted root CA's PEM file: {path}: {e}") from None
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ConfigError(f"{where}: unable to add {path} to trust pool: no certificate in it") from None
        pems.extend(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    return b"".join(pems)


def _preferred_chains(config: Any, where: str) -> ChainPreference | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - {"smallest", "root_common_name", "any_common_name"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    smallest = config.get("smallest")
    if smallest is not None and not isinstance(smallest, bool):
        raise ConfigError(f"{where}.smallest must be a boolean, got {smallest!r}")
    lists = {}
    for name in ("root_common_name", "any_common_name"):
        value = config.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{name} must be a list of strings")
        lists[name] = tuple(value)
    return ChainPreference(smallest, lists["root_common_name"], lists["any_common_name"])


def _expand(text: str, where: str) -> str:
    """Caddy's ``ReplaceOrErr(text, true, true)``: global placeholders (``{env.*}``), an
    unknown or empty one being an error."""
    if "{" not in text:
        return text
    for key in template(text).keys:
        value, known = lookup(key, _NO_REQUEST)
        if not known:
            raise ConfigError(f"{where}: unrecognized placeholder {{{key}}}")
        if value in (None, ""):
            raise ConfigError(f"{where}: evaluated placeholder {{{key}}} is empty")
    return replace_all(text, _NO_REQUEST)



