"""The ``zerossl`` issuer: the ACME issuer at ZeroSSL, with EAB credentials from ZeroSSL's API.

Caddy 2.6.2 ``modules/caddytls/zerosslissuer.go``: the CA defaults to ZeroSSL's directory, and
when an account must be registered without ``external_account``, the credentials are fetched
first: ``POST <api>/eab-credentials-email`` with the form ``email=…`` (``caddy@zerossl.com``
when no email is configured, which then becomes the account's contact), or with ``api_key``
``POST <api>/eab-credentials?access_key=…``.  The answer is JSON with ``eab_kid`` and
``eab_hmac_key``, or ``error: {code, type}``.  The request goes out with treq on the reactor.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import Agent

from txcaddy.config.placeholders import replace_all
from txcaddy.tls._acmeaccount import ACMEAccount
from txcaddy.tls._acmeerrors import ACMEError
from txcaddy.tls._acmeissuer import _NO_REQUEST, ZEROSSL_PRODUCTION, ACMEIssuer, ExternalAccount

__all__ = ["ZEROSSL_API_BASE", "ZEROSSL_DEFAULT_EMAIL", "ZeroSSLIssuer"]

log = Logger()

ZEROSSL_API_BASE = "https://api.zerossl.com/acme"
"""Where EAB credentials come from (an issuer's ``api_base`` replaces it, for tests)."""
ZEROSSL_DEFAULT_EMAIL = "caddy@zerossl.com"


class ZeroSSLIssuer(ACMEIssuer):
    """The ``zerossl`` issuer: ACME at ZeroSSL, with EAB credentials fetched from ZeroSSL's API
    the first time an account is registered (Caddy's ``ZeroSSLIssuer``).

    @ivar api_key: ZeroSSL's API access key; without one the credentials are asked for by
        e-mail address.
    @ivar api_base: where ZeroSSL's API is ("" for ``ZEROSSL_API_BASE``; tests point it at a
        local server).
    """

    def __init__(self, *, api_key: str = "", api_base: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("ca", ZEROSSL_PRODUCTION)
        super().__init__(**kwargs)
        self.api_key = api_key
        self.api_base = api_base

    async def _before_registration(self, account: ACMEAccount) -> ACMEAccount:
        if self.external_account is not None:
            return account
        email = self.email
        if not self.api_key and not email:
            log.warn("missing email address for ZeroSSL; it is strongly recommended to set one for next time")
            email = ZEROSSL_DEFAULT_EMAIL
        if not self.api_key and not account.contact:
            account = ACMEAccount(account.key, {**account.registration, "contact": [f"mailto:{email}"]})
        self.external_account = await self.eab_credentials(email)
        return account

    def eab_credentials(self, email: str = "") -> Deferred[ExternalAccount]:
        """Ask ZeroSSL's API for EAB credentials: with ``api_key`` if set, else for ``email``."""
        return Deferred.fromCoroutine(self._eab_credentials(email or self.email or ZEROSSL_DEFAULT_EMAIL))

    async def _eab_credentials(self, email: str) -> ExternalAccount:
        client = HTTPClient(Agent(self.reactor))
        api_base = self.api_base or ZEROSSL_API_BASE
        headers: dict[bytes | str, list[bytes | str]] = {"User-Agent": ["txcaddy CertMagic"]}
        if self.api_key:
            api_key = replace_all(self.api_key, _NO_REQUEST)
            if not api_key:
                raise ACMEError(f"missing API key: '{self.api_key}'")
            url = f"{api_base}/eab-credentials?{urlencode({'access_key': api_key})}"
            body = b""
        else:
            url = f"{api_base}/eab-credentials-email"
            body = urlencode({"email": email}).encode()
            headers["Content-Type"] = ["application/x-www-form-urlencoded"]
        try:
            response = await client.post(url, data=body, headers=headers)
            content = await response.content()
        except Exception as e:
            raise ACMEError(f"performing EAB credentials request: {e}") from None
        try:
            result = json.loads(content)
            error = result.get("error") or {}
            code = int(error.get("code") or 0) if isinstance(error, dict) else 0
        except (ValueError, AttributeError, TypeError) as e:
            raise ACMEError(f"decoding API response: {e}") from None
        if code:
            raise ACMEError(f"failed getting EAB credentials: HTTP {response.code}: {error.get('type', '')} (code {code})")
        if response.code != 200:
            raise ACMEError(f"failed getting EAB credentials: HTTP {response.code}")
        credentials = ExternalAccount(str(result.get("eab_kid") or ""), str(result.get("eab_hmac_key") or ""))
        log.info("generated EAB credentials key_id={key_id}", key_id=credentials.key_id)
        return credentials
