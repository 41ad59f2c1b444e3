"""``authentication`` (``basicauth``): let a request through only with valid credentials.

Follows Caddy 2.6.2's ``modules/caddyhttp/caddyauth`` (``caddyauth.go``, ``basicauth.go``,
``hashes.go``):

* ``http.handlers.authentication`` asks each provider in turn; the first that
  authenticates sets ``{http.auth.user.id}`` (and ``{http.auth.user.<key>}`` for the
  provider's metadata) and the request goes on. Otherwise the request fails with a 401
  *error* (``not authenticated``), so ``handle_errors`` routes apply; a provider that
  fails for a technical reason (a malformed hash) is logged and skipped.
* ``http.authentication.providers.http_basic`` reads ``Authorization: Basic``, and on
  missing or wrong credentials sets ``WWW-Authenticate: Basic realm="<realm>"``
  (``restricted`` by default), which the error response keeps.
* Passwords are hashed with ``http.authentication.hashes.bcrypt`` (the default) or the
  deprecated ``scrypt``. A stored password starting with ``$`` is used as written (bcrypt's
  ``$2a$…``); any other is base64-decoded first (Caddy's older, redundant encoding).
* An unknown user is checked against a fixed fake hash, so that the answer takes as
  long as for a known user and does not reveal which names exist.

Hashing is slow on purpose (bcrypt cost 14 takes about a second), so every comparison
runs in the reactor's thread pool, never on the reactor thread. ``hash_cache`` (off in
JSON unless present; the Caddyfile's ``basicauth`` always turns it on) remembers up to
1000 results, good and bad, keyed by hash, salt and password, and drops about a tenth
of them at random when full, as Caddy does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
from typing import Any

import bcrypt
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from txcaddy._reactor import default_reactor
from txcaddy.config.placeholders import replace_all_global
from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRING, ListOf, Module, ModuleMap, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = [
    "Account",
    "Authentication",
    "BcryptHash",
    "HTTPBasicAuth",
    "HashCache",
    "IAuthenticator",
    "IPasswordComparer",
    "ScryptHash",
    "User",
    "basic_auth",
]

_log = Logger(namespace="txcaddy.http.authentication")


class User:
    """Who a provider authenticated: ``id`` and metadata published as placeholders."""

    __slots__ = ("id", "metadata")

    def __init__(self, id: str, metadata: dict[str, str] | None = None) -> None:
        self.id = id
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return f"User({self.id!r})"


class IAuthenticator(Interface):
    """An ``http.authentication.providers`` module."""

    def authenticate(request: Request, response: Response) -> User | None | Deferred[User | None]:
        """The user the request authenticates as, or None (the provider may set headers
        on ``response`` to ask for credentials). Fail only for technical reasons."""


class IPasswordComparer(Interface):
    """An ``http.authentication.hashes`` module. ``compare`` is slow and blocking: it is
    called in a thread."""

    fake_hash = Attribute("A hash to compare against for unknown users (bytes), or None.")

    def compare(hashed: bytes, plaintext: bytes, salt: bytes) -> bool:
        """Whether ``plaintext`` (with ``salt``) hashes to ``hashed``; raise ValueError for
        a hash that cannot be used."""


# The bcrypt hash Caddy 2.6.2 compares unknown users against (cost 14, like real ones).
_BCRYPT_FAKE_HASH = b"$2a$14$X3ulqf/iGxnf1k6oMZ.RZeJUoqI9PX2PM4rS5lkIKJXduLGXGPrt6"
# bcrypt reads at most 72 bytes of a password; Go's bcrypt ignores the rest silently,
# the bcrypt package refuses longer ones, so they are cut as Go's would be.
_BCRYPT_MAX_PASSWORD = 72


@implementer(IPasswordComparer)
class BcryptHash:
    """``http.authentication.hashes.bcrypt``."""

    fake_hash = _BCRYPT_FAKE_HASH

    def compare(self, hashed: bytes, plaintext: bytes, salt: bytes) -> bool:
        return bcrypt.checkpw(plaintext[:_BCRYPT_MAX_PASSWORD], hashed)


@implementer(IPasswordComparer)
class ScryptHash:
    """``http.authentication.hashes.scrypt`` (deprecated in Caddy; kept for old configs)."""

    fake_hash = base64.b64decode("kFbjiVemlwK/ZS0tS6/UQqEDeaNMigyCs48KEsGUse8=")

    def __init__(self, n: int = 0, r: int = 0, p: int = 0, key_length: int = 0) -> None:
        self.n = n or 32768
        self.r = r or 8
        self.p = p or 1
        self.key_length = key_length or 32

    def compare(self, hashed: bytes, plaintext: bytes, salt: bytes) -> bool:
        ours = hashlib.scrypt(
            plaintext, salt=salt, n=self.n, r=self.r, p=self.p, dklen=self.key_length,
            maxmem=129 * self.n * self.r * self.p + (1 << 20),
        )
        return hmac.compare_digest(ours, hashed)


class HashCache:
    """Results of recent comparisons (Caddy's ``Cache``): a hit is only as good as its value."""

    limit = 1000

    def __init__(self, rng: random.Random | None = None) -> None:
        self.results: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._random = rng or random.Random()

    def get(self, key: tuple[bytes, bytes, bytes]) -> bool | None:
        return self.results.get(key)

    def put(self, key: tuple[bytes, bytes, bytes], same: bool) -> None:
        results = self.results
        if len(results) >= self.limit:
            # about a tenth at once, so that this is not paid on every miss
            count = min(max(len(results) // 10, 1) + 1, len(results))
            for old in self._random.sample(list(results), count):
                del results[old]
        results[key] = same


class Account:
    """A user name with its hashed password and salt, both decoded to bytes."""

    __slots__ = ("username", "password", "salt")

    def __init__(self, username: str, password: bytes, salt: bytes = b"") -> None:
        self.username = username
        self.password = password
        self.salt = salt


def basic_auth(request: Request) -> tuple[str, bytes] | None:
    """Go's ``Request.BasicAuth``: (user name, password) from ``Authorization``, or None."""
    header = request.headers.get("Authorization")
    if header is None or len(header) < 6 or header[:6].lower() != "basic ":
        return None
    encoded = header[6:].replace("\r", "").replace("\n", "")  # Go's decoder skips newlines
    try:
        decoded = base64.b64decode(encoded.encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return username.decode("utf-8", "surrogateescape"), password


@implementer(IAuthenticator)
class HTTPBasicAuth:
    """``http.authentication.providers.http_basic``."""

    def __init__(
        self, accounts: dict[str, Account], comparer: Any, reactor: Any, realm: str = "",
        cache: HashCache | None = None,
    ) -> None:
        self.accounts = accounts
        self.comparer = comparer
        self.reactor = reactor
        self.realm = realm or "restricted"
        self.cache = cache
        self._challenge = f'Basic realm="{self.realm}"'

    def authenticate(self, request: Request, response: Response) -> Any:
        credentials = basic_auth(request)
        if credentials is None:
            return self._prompt(response)
        username, plaintext = credentials
        account = self.accounts.get(username)
        if account is not None:
            hashed, salt = account.password, account.salt
        else:
            # compare anyway, so an unknown name takes as long as a known one
            fake = getattr(self.comparer, "fake_hash", None)
            if fake is None:
                return self._prompt(response)
            hashed, salt = fake, b""
        key = (hashed, salt, plaintext)
        cache = self.cache
        if cache is not None:
            known = cache.get(key)
            if known is not None:
                return self._decide(known, account, response)
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.comparer.compare, hashed, plaintext, salt)

        def compared(same: bool) -> User | None:
            if cache is not None:
                cache.put(key, bool(same))
            return self._decide(bool(same), account, response)

        def failed(failure: Failure) -> Failure:  # a malformed stored hash, for instance
            self._prompt(response)
            return failure  # a technical error: the handler logs it and asks the next provider

        return d.addCallbacks(compared, failed)

    def _decide(self, same: bool, account: Account | None, response: Response) -> User | None:
        if same and account is not None:
            return User(account.username)
        return self._prompt(response)

    def _prompt(self, response: Response) -> User | None:
        """Ask for credentials (Caddy's ``promptForCredentials``); nobody is authenticated."""
        response.headers.set("WWW-Authenticate", self._challenge)
        return None


@implementer(IHandler)
class Authentication:
    """``http.handlers.authentication``."""

    def __init__(self, providers: list[tuple[str, Any]], log: Logger | None = None) -> None:
        self.providers = providers
        self.log = log or _log

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        return self._ask(0, request, response, next)

    def _ask(self, index: int, request: Request, response: Response, next: Any) -> Any:
        providers = self.providers
        while index < len(providers):
            name, provider = providers[index]
            index += 1
            try:
                result = provider.authenticate(request, response)
            except Exception:
                self._provider_failed(Failure(), name)
                continue
            if isinstance(result, Deferred):
                return result.addCallbacks(
                    self._answered, self._failed,
                    callbackArgs=(index, request, response, next),
                    errbackArgs=(name, index, request, response, next),
                )
            if result is not None:
                return self._authenticated(result, request, response, next)
        raise HandlerError(401, "not authenticated")

    def _answered(self, user: User | None, index: int, request: Request, response: Response, next: Any) -> Any:
        if user is None:
            return self._ask(index, request, response, next)
        return self._authenticated(user, request, response, next)

    def _failed(self, failure: Failure, name: str, index: int, request: Request, response: Response, next: Any) -> Any:
        self._provider_failed(failure, name)
        return self._ask(index, request, response, next)

    def _provider_failed(self, failure: Failure, name: str) -> None:
        self.log.error("auth provider returned error: provider={provider} error={error}",
                       provider=name, error=failure.getErrorMessage())

    def _authenticated(self, user: User, request: Request, response: Response, next: Any) -> Any:
        placeholders = request.placeholders
        placeholders["http.auth.user.id"] = user.id
        for key, value in user.metadata.items():
            placeholders["http.auth.user." + key] = value
        return next(request, response)


# -- loading -----------------------------------------------------------------------------------

_ACCOUNT = Obj({"username": STRING, "password": STRING, "salt": STRING}, strict=True, name="caddyauth.Account")


@module("http.authentication.hashes.bcrypt", schema=Obj({}, strict=True, name="caddyauth.BcryptHash"))
def load_bcrypt(config: dict[str, Any], context: Any) -> BcryptHash:
    return BcryptHash()


@module("http.authentication.hashes.scrypt", schema=Obj(
    {"N": INT, "r": INT, "p": INT, "key_length": INT}, strict=True, name="caddyauth.ScryptHash",
))
def load_scrypt(config: dict[str, Any], context: Any) -> ScryptHash:
    context.log.warn("use of 'scrypt' is deprecated, please use 'bcrypt' instead")
    return ScryptHash(config.get("N") or 0, config.get("r") or 0, config.get("p") or 0, config.get("key_length") or 0)


def _std_b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("utf-8", "surrogateescape"), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"base64-decoding {what}: {e}") from None


@module("http.authentication.providers.http_basic", schema=Obj(
    {
        "hash": Module("http.authentication.hashes", "algorithm"),
        "accounts": ListOf(_ACCOUNT),
        "realm": STRING,
        "hash_cache": Obj({}, name="caddyauth.Cache"),
    },
    strict=True, name="caddyauth.HTTPBasicAuth",
))
def load_http_basic(config: dict[str, Any], context: Any) -> HTTPBasicAuth:
    hash_config = config.get("hash") or {"algorithm": "bcrypt"}
    try:
        comparer = context.load_module("http.authentication.hashes", hash_config, "algorithm")
    except ConfigError as e:
        raise ConfigError(f"loading password hasher module: {e}") from None
    accounts: dict[str, Account] = {}
    for i, raw in enumerate(config.get("accounts") or []):
        username = raw.get("username") or ""
        if username in accounts:  # checked before placeholders expand, as Caddy does
            raise ConfigError(f"account {i}: username is not unique: {username}")
        username = replace_all_global(username)
        password = replace_all_global(raw.get("password") or "")
        salt_text = replace_all_global(raw.get("salt") or "")
        if not username or not password:
            raise ConfigError(f"account {i}: username and password are required")
        # a password in Modular Crypt Format ($2a$…) as written; any other base64-encoded
        hashed = password.encode("utf-8", "surrogateescape") if password.startswith("$") else _std_b64decode(password, "password")
        salt = _std_b64decode(salt_text, "salt") if salt_text else b""
        accounts[username] = Account(username, hashed, salt)
    cache = HashCache() if "hash_cache" in config else None
    return HTTPBasicAuth(accounts, comparer, default_reactor(context.reactor), config.get("realm") or "", cache)


@module("http.handlers.authentication", schema=Obj(
    {"providers": ModuleMap("http.authentication.providers")}, strict=True, name="caddyauth.Authentication",
))
def load_authentication(config: dict[str, Any], context: Any) -> Authentication:
    providers: list[tuple[str, Any]] = []
    for name, provider_config in (config.get("providers") or {}).items():
        if not isinstance(provider_config, dict):
            raise ConfigError(f"authentication: provider {name} must be a JSON object")
        provider = context.load_module("http.authentication.providers", {**provider_config, "provider": name}, "provider")
        providers.append((name, provider))
    return Authentication(providers, context.log)
