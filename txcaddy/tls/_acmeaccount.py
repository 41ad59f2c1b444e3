"""ACME accounts in storage, where certmagic v0.17.2 keeps them (``account.go``).

An account is a private key (``…/users/<email>/<local part>.key``, PEM) and its registration
(``….json``): acmez's ``acme.Account`` as Go's ``json.MarshalIndent`` writes it, tab-indented,
with the account URL as ``location``.  Caddy's stored accounts are reused as they are, and
Caddy reuses ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from txcaddy.interfaces import IStorage
from txcaddy.tls._acmeerrors import ACMEError
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.keys import PrivateKey, load_private_key_pem, private_key_pem
from txcaddy.tls.storage import acme_user_key, acme_user_reg, acme_users_prefix

__all__ = ["ACMEAccount", "load_account", "most_recent_account_email", "save_account", "stored_account_with_key"]


@dataclass
class ACMEAccount:
    """An account key and its registration as acmez stores it (``{"status": …, "contact":
    […], …, "location": <account URL>}``; status "" means not registered yet)."""

    key: PrivateKey
    registration: dict[str, Any] = field(default_factory=dict)

    @property
    def registered(self) -> bool:
        return bool(self.registration.get("status"))

    @property
    def location(self) -> str:
        return str(self.registration.get("location") or "")

    @property
    def contact(self) -> list[str]:
        return list(self.registration.get("contact") or ())

    @property
    def primary_contact(self) -> str:
        """certmagic's ``getPrimaryContact``: the first contact without its scheme."""
        contact = self.contact
        return contact[0].partition(":")[2] if contact and ":" in contact[0] else (contact[0] if contact else "")


async def load_account(storage: IStorage, issuer_key: str, email: str) -> ACMEAccount | None:
    """The stored account of ``email`` at the CA ``issuer_key``, or None if none is stored."""
    try:
        registration = await storage.load(acme_user_reg(issuer_key, email))
        key_pem = await storage.load(acme_user_key(issuer_key, email))
    except KeyNotFound:
        return None
    try:
        decoded = json.loads(registration)
    except ValueError as e:
        raise ACMEError(f"decoding stored ACME account {acme_user_reg(issuer_key, email)}: {e}") from None
    try:
        key = load_private_key_pem(key_pem)
    except ValueError as e:
        raise ACMEError(f"could not decode account's private key: {e}") from None
    return ACMEAccount(key, decoded if isinstance(decoded, dict) else {})


async def save_account(storage: IStorage, issuer_key: str, account: ACMEAccount) -> None:
    """Store the registration (tab-indented JSON, as Go's ``MarshalIndent``) and the key PEM
    under the account's primary contact."""
    email = account.primary_contact
    await storage.store(acme_user_reg(issuer_key, email), json.dumps(account.registration, indent="\t").encode())
    await storage.store(acme_user_key(issuer_key, email), private_key_pem(account.key))


async def most_recent_account_email(storage: IStorage, issuer_key: str) -> str | None:
    """certmagic's ``mostRecentAccountEmail``: the contact of the newest account folder."""
    try:
        folders = await storage.list(acme_users_prefix(issuer_key), False)
    except KeyNotFound:
        return None
    dated = []
    for folder in folders:
        try:
            info = await storage.stat(folder)
        except KeyNotFound:
            continue
        if not info.is_terminal:
            dated.append((info.modified, folder))
    if not dated:
        return None
    newest = max(dated)[1].rsplit("/", 1)[-1]
    account = await load_account(storage, issuer_key, newest)
    return account.primary_contact if account is not None else ""


async def stored_account_with_key(storage: IStorage, issuer_key: str, key_pem: bytes) -> ACMEAccount | None:
    """certmagic's ``loadAccountByKey``: the stored account whose key file is ``key_pem``."""
    try:
        folders = await storage.list(acme_users_prefix(issuer_key), False)
    except KeyNotFound:
        return None
    for folder in folders:
        email = folder.rsplit("/", 1)[-1]
        try:
            stored = await storage.load(acme_user_key(issuer_key, email))
        except KeyNotFound:
            continue
        if stored.strip() == key_pem.strip():
            return await load_account(storage, issuer_key, email)
    return None
