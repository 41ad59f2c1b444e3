"""``authentication`` with ``http_basic``: bcrypt off the reactor thread, the 401 error
path, the user placeholders, the hash cache and the fake hash, as Caddy 2.6.2."""

from __future__ import annotations

import base64
import random
import threading
from typing import Any

import bcrypt
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.authentication import (
    _BCRYPT_FAKE_HASH,
    Authentication,
    BcryptHash,
    HashCache,
    HTTPBasicAuth,
    ScryptHash,
    basic_auth,
)
from txcaddy.http.server import HTTPServer
from txcaddy.testing import FakeResponse, make_request

# ``caddy hash-password --plaintext hunter2`` (Caddy 2.6.2, cost 14): checking it takes
# about a second, so only one test uses it; the others hash at cost 4.
CADDY_HUNTER2 = "$2a$14$WWniZv7jmRGvn81agkK9I.0jV2JpPvKm7t6itocmGvumqGYh200Sa"

ALICE_HASH = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(4)).decode()


class FakeThreadPool:
    """Keeps the work it is given; ``run`` does it in a real thread of its own."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Any, tuple[Any, ...]]] = []
        self.threads: list[int] = []
        self.calls: list[Any] = []

    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(f)
        self.pending.append((on_result, f, args))

    def run(self) -> None:
        jobs, self.pending = self.pending, []
        for on_result, f, args in jobs:

            def work(on_result: Any = on_result, f: Any = f, args: Any = args) -> None:
                self.threads.append(threading.get_ident())
                try:
                    result, ok = f(*args), True
                except BaseException:
                    result, ok = Failure(), False
                on_result(ok, result)

            thread = threading.Thread(target=work)
            thread.start()
            thread.join()


class FakeReactor:
    """A reactor with a recorded thread pool; what threads hand back runs on ``drive``."""

    def __init__(self) -> None:
        self.pool = FakeThreadPool()
        self.from_threads: list[Any] = []

    def getThreadPool(self) -> FakeThreadPool:
        return self.pool

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.from_threads.append((f, args, kwargs))

    def drive(self) -> None:
        """Run the pool's work, then its results on this (the reactor's) thread."""
        while self.pool.pending or self.from_threads:
            self.pool.run()
            calls, self.from_threads = self.from_threads, []
            for f, args, kwargs in calls:
                f(*args, **kwargs)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def auth_config(**basic_config: Any) -> dict[str, Any]:
    provider = {"accounts": [{"username": "alice", "password": ALICE_HASH}], **basic_config}
    return {"handler": "authentication", "providers": {"http_basic": provider}}


class Harness:
    """A server whose routes are ``authentication`` then ``respond``, with error routes."""

    def __init__(self, auth: dict[str, Any], body: str = "hi {http.auth.user.id}", errors: list[Any] | None = None) -> None:
        self.reactor = FakeReactor()
        context = LoadContext(reactor=self.reactor)
        routes = context.load_routes([{"handle": [auth, {"handler": "static_response", "body": body}]}])
        error_routes = context.load_routes(errors) if errors is not None else None
        self.server = HTTPServer("srv0", [":80"], routes, error_routes, reactor=self.reactor)

    def get(self, headers: dict[str, str] | None = None, drive: bool = True) -> FakeResponse:
        response = FakeResponse()
        self.server.handle(make_request(headers=headers), response)
        if drive:
            self.reactor.drive()
        return response


class BasicAuthTests(SynchronousTestCase):
    def test_no_credentials(self) -> None:
        """Without credentials: 401 with the default realm's challenge, and no hashing at all."""
        harness = Harness(auth_config())
        response = harness.get()
        self.assertEqual(response.status, 401)
        self.assertEqual(response.headers.get("WWW-Authenticate"), 'Basic realm="restricted"')
        self.assertEqual(harness.reactor.pool.calls, [])

    def test_wrong_password(self) -> None:
        """A wrong password is a 401 with the configured realm."""
        harness = Harness(auth_config(realm="staff only"))
        response = harness.get(basic("alice", "nope"))
        self.assertEqual(response.status, 401)
        self.assertEqual(response.headers.get("WWW-Authenticate"), 'Basic realm="staff only"')

    def test_right_password_and_placeholder(self) -> None:
        """The right password passes, and {http.auth.user.id} is the user name."""
        response = Harness(auth_config()).get(basic("alice", "wonderland"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hi alice")
        self.assertNotIn("WWW-Authenticate", response.headers)

    def test_caddy_hash_fixture(self) -> None:
        """A hash made by caddy hash-password 2.6.2 (cost 14) checks out."""
        harness = Harness(auth_config(accounts=[{"username": "bob", "password": CADDY_HUNTER2}]))
        self.assertEqual(harness.get(basic("bob", "hunter2")).body, b"hi bob")

    def test_base64_password(self) -> None:
        """A password not starting with $ is base64-decoded first (Caddy's older form)."""
        encoded = base64.b64encode(ALICE_HASH.encode()).decode()
        harness = Harness(auth_config(accounts=[{"username": "alice", "password": encoded}]))
        self.assertEqual(harness.get(basic("alice", "wonderland")).status, 200)
        self.assertEqual(harness.get(basic("alice", "other")).status, 401)

    def test_hash_checked_off_the_reactor_thread(self) -> None:
        """The bcrypt check goes to the reactor's thread pool and runs in another thread."""
        harness = Harness(auth_config())
        response = harness.get(basic("alice", "wonderland"), drive=False)
        self.assertFalse(response.finished)  # nothing hashed yet: the answer waits for the pool
        self.assertEqual([f.__func__ for f in harness.reactor.pool.calls], [BcryptHash.compare])
        harness.reactor.drive()
        self.assertEqual(response.status, 200)
        self.assertEqual(len(harness.reactor.pool.threads), 1)
        self.assertNotEqual(harness.reactor.pool.threads[0], threading.get_ident())

    def test_unknown_user_compares_fake_hash(self) -> None:
        """An unknown user is compared against Caddy's fake hash, then refused."""
        harness = Harness(auth_config())
        seen: list[bytes] = []
        handler = harness.server.routes.routes[0].handlers[0]
        provider = handler.providers[0][1]
        original = provider.comparer.compare

        def compare(hashed: bytes, plaintext: bytes, salt: bytes) -> bool:
            seen.append(hashed)
            return False

        provider.comparer.compare = compare
        try:
            response = harness.get(basic("mallory", "x"))
        finally:
            provider.comparer.compare = original
        self.assertEqual(response.status, 401)
        self.assertEqual(seen, [_BCRYPT_FAKE_HASH])
        self.assertTrue(bcrypt.checkpw(b"antitiming", _BCRYPT_FAKE_HASH))

    def test_handle_errors_applies(self) -> None:
        """The 401 is an error: handle_errors answers it, and the challenge header stays."""
        errors = [{"handle": [{"handler": "static_response",
                               "body": "{http.error.status_code} {http.error.message}"}]}]
        response = Harness(auth_config(), errors=errors).get(basic("alice", "bad"))
        self.assertEqual(response.status, 401)
        self.assertEqual(response.body, b"401 not authenticated")
        self.assertEqual(response.headers.get("WWW-Authenticate"), 'Basic realm="restricted"')

    def test_cache_avoids_second_hash(self) -> None:
        """With hash_cache, the second request with the same credentials is not hashed again."""
        harness = Harness(auth_config(hash_cache={}))
        self.assertEqual(harness.get(basic("alice", "wonderland")).status, 200)
        self.assertEqual(harness.get(basic("alice", "wonderland"), drive=False).status, 200)
        # a wrong password is remembered too (a hit is only as good as its value)
        self.assertEqual(harness.get(basic("alice", "bad")).status, 401)
        self.assertEqual(harness.get(basic("alice", "bad"), drive=False).status, 401)
        self.assertEqual(len(harness.reactor.pool.calls), 2)

    def test_no_cache_by_default(self) -> None:
        """Without hash_cache in the JSON every request is hashed."""
        harness = Harness(auth_config())
        harness.get(basic("alice", "wonderland"))
        harness.get(basic("alice", "wonderland"))
        self.assertEqual(len(harness.reactor.pool.calls), 2)

    def test_malformed_hash_is_401(self) -> None:
        """A stored hash bcrypt cannot read fails the provider: logged, and the answer is 401."""
        harness = Harness(auth_config(accounts=[{"username": "alice", "password": "$2a$garbage"}]))
        response = harness.get(basic("alice", "wonderland"))
        self.assertEqual(response.status, 401)
        self.assertEqual(response.headers.get("WWW-Authenticate"), 'Basic realm="restricted"')

    def test_long_password_cut_as_go(self) -> None:
        """Passwords longer than bcrypt's 72 bytes compare on their first 72, as Go's bcrypt."""
        long = "p" * 72
        stored = bcrypt.hashpw(long.encode(), bcrypt.gensalt(4)).decode()
        harness = Harness(auth_config(accounts=[{"username": "alice", "password": stored}]))
        self.assertEqual(harness.get(basic("alice", long + "ignored")).status, 200)

    def test_metadata_placeholders(self) -> None:
        """A provider's user metadata becomes {http.auth.user.<key>}."""

        class Provider:
            def authenticate(self, request: Any, response: Any) -> Any:
                from txcaddy.http.handlers.authentication import User

                return User("u1", {"role": "admin"})

        seen: list[str] = []
        handler = Authentication([("p", Provider())])
        request = make_request()
        handler.serve(request, FakeResponse(), lambda rq, rs: seen.append(rq.placeholders["http.auth.user.role"]))
        self.assertEqual(seen, ["admin"])
        self.assertEqual(request.placeholders["http.auth.user.id"], "u1")

    def test_no_providers(self) -> None:
        """With no providers nobody is authenticated."""
        with self.assertRaises(HandlerError) as caught:
            Authentication([]).serve(make_request(), FakeResponse(), lambda rq, rs: None)
        self.assertEqual(caught.exception.status, 401)


class ParsingTests(SynchronousTestCase):
    def test_basic_auth_header(self) -> None:
        """Authorization parsing follows Go's Request.BasicAuth."""
        self.assertEqual(basic_auth(make_request(headers=basic("a", "b:c"))), ("a", b"b:c"))
        self.assertEqual(basic_auth(make_request(headers={"Authorization": "bAsIc " + base64.b64encode(b"x:").decode()})),
                         ("x", b""))
        for value in ("Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
            self.assertIsNone(basic_auth(make_request(headers={"Authorization": value})), value)

    def test_cache_eviction(self) -> None:
        """A full cache drops a tenth of its entries plus one before adding, as Caddy."""
        cache = HashCache(random.Random(1))
        for i in range(1000):
            cache.put((b"h", b"", str(i).encode()), True)
        self.assertEqual(len(cache.results), 1000)
        cache.put((b"h", b"", b"new"), False)
        self.assertEqual(len(cache.results), 900)
        self.assertIs(cache.get((b"h", b"", b"new")), False)

    def test_scrypt_compare(self) -> None:
        """scrypt compares the derived key, with the account's salt."""
        import hashlib

        derived = hashlib.scrypt(b"pw", salt=b"salt", n=16, r=8, p=1, dklen=32)
        comparer = ScryptHash(n=16)
        self.assertTrue(comparer.compare(derived, b"pw", b"salt"))
        self.assertFalse(comparer.compare(derived, b"px", b"salt"))


class LoadingTests(SynchronousTestCase):
    def load(self, provider: dict[str, Any]) -> Any:
        config = {"handler": "authentication", "providers": {"http_basic": provider}}
        return LoadContext(reactor=FakeReactor()).load_handler(config)

    def test_duplicate_user(self) -> None:
        """Two accounts with one name are refused."""
        with self.assertRaises(ConfigError) as caught:
            self.load({"accounts": [{"username": "a", "password": "$x"}, {"username": "a", "password": "$y"}]})
        self.assertIn("account 1: username is not unique: a", str(caught.exception))

    def test_missing_password(self) -> None:
        """An account needs a name and a password."""
        with self.assertRaises(ConfigError) as caught:
            self.load({"accounts": [{"username": "a"}]})
        self.assertIn("account 0: username and password are required", str(caught.exception))

    def test_bad_base64(self) -> None:
        """A password that is neither $-prefixed nor base64 is refused."""
        with self.assertRaises(ConfigError) as caught:
            self.load({"accounts": [{"username": "a", "password": "not base64!"}]})
        self.assertIn("base64-decoding password", str(caught.exception))

    def test_env_placeholder_in_account(self) -> None:
        """Account fields expand global placeholders at load, as Caddy's provisioning replacer."""
        import os

        os.environ["TXCADDY_TEST_HASH"] = ALICE_HASH
        self.addCleanup(os.environ.pop, "TXCADDY_TEST_HASH")
        handler = self.load({"accounts": [{"username": "alice{http.request.host}", "password": "{env.TXCADDY_TEST_HASH}"}]})
        provider = handler.providers[0][1]
        self.assertIsInstance(provider, HTTPBasicAuth)
        self.assertEqual(list(provider.accounts), ["alice"])
        self.assertEqual(provider.accounts["alice"].password, ALICE_HASH.encode())

    def test_unknown_hash(self) -> None:
        """An unknown algorithm is 'module not registered'."""
        with self.assertRaises(ConfigError) as caught:
            self.load({"hash": {"algorithm": "md5"}, "accounts": []})
        self.assertIn("module not registered: http.authentication.hashes.md5", str(caught.exception))

    def test_every_adapter_fixture_loads(self) -> None:
        """Every authentication handler in the adapter's fixtures loads, hash cache on as the Caddyfile sets it."""
        found = 0
        for where, config in fixture_handlers("authentication"):
            handler = LoadContext(reactor=FakeReactor()).load_handler(dict(config))
            self.assertIsInstance(handler, Authentication, where)
            self.assertIsNotNone(handler.providers[0][1].cache, where)
            found += 1
        self.assertGreater(found, 0)
