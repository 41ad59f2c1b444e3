"""The ``redis`` storage module against a real ``redis-server`` on loopback: the storage
contract, its layout, locks with expiry and renewal, outages, its JSON and Caddyfile."""

from __future__ import annotations

import atexit
import random
import threading
import time
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from txcaddy._reactor import default_reactor
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.errors import ConfigError as CaddyfileError
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IStorage
from txcaddy.tls.certificates import CertificateCache
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.manager import RETRY_INTERVALS, AutomationPolicy, CertificateManager
from txcaddy.tls.redisstorage import (
    RedisConfig,
    RedisStorage,
    RedisStorageError,
    redis_config,
    thread_runner,
)
from txcaddy.tls.storage import storage_from_config

from ._certs import NOW
from ._redis import NO_REDIS, REDIS_SERVER, RedisServer
from .test_manager import DAY, FakeIssuer
from .test_storage import START, StorageContractMixin

REACTOR = default_reactor()


def run_now(f: Any, *args: Any) -> Deferred[Any]:
    """A ``run`` that calls at once on this thread, so a Clock drives the storage."""
    return maybeDeferred(f, *args)


_shared: list[RedisServer] = []


def shared_server() -> RedisServer:
    """One redis-server for these tests, started on first use and stopped at exit."""
    if not _shared:
        server = RedisServer()
        server.start()
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0]


class _Server:
    """Tests on the shared server (trial has no setUpClass)."""

    @property
    def server(self) -> RedisServer:
        return shared_server()

    def redis_storage(self, clock: Any, **kwargs: Any) -> RedisStorage:
        config = RedisConfig(port=self.server.port, key_prefix=kwargs.pop("key_prefix", "caddy"))
        return RedisStorage(config, clock, kwargs.pop("run", run_now), **kwargs)


class RedisStorageContractTests(_Server, StorageContractMixin, SynchronousTestCase):
    """``RedisStorage`` keeps the storage contract."""

    if REDIS_SERVER is None:
        skip = NO_REDIS

    def make_storage(self) -> RedisStorage:
        self.server.client().flushall()
        return self.redis_storage(self.clock)


class RedisStorageTests(_Server, SynchronousTestCase):
    """The layout in Redis and the locks' expiry and renewal, driven by a Clock."""

    if REDIS_SERVER is None:
        skip = NO_REDIS

    def setUp(self) -> None:
        self.redis = self.server.client()
        self.redis.flushall()
        self.clock = Clock()
        self.clock.advance(START)
        self.storage = self.redis_storage(self.clock)

    def test_provides_istorage(self) -> None:
        """``RedisStorage`` provides ``IStorage``."""
        self.assertTrue(verifyObject(IStorage, self.storage))

    def test_values_are_hashes_under_the_prefix(self) -> None:
        """A value is the hash ``<key_prefix>/<key>`` with its bytes and the clock's time."""
        self.successResultOf(self.storage.store("certificates/local/a/a.crt", b"PEM"))
        self.assertEqual(self.redis.keys("*"), [b"caddy/certificates/local/a/a.crt"])
        self.assertEqual(self.redis.hgetall("caddy/certificates/local/a/a.crt"),
                         {b"value": b"PEM", b"modified": repr(float(START)).encode()})
        self.assertEqual(self.successResultOf(self.storage.stat("certificates/local/a/a.crt")).modified, START)

    def test_prefixes_isolate(self) -> None:
        """Two key prefixes on one server see nothing of each other."""
        other = self.redis_storage(self.clock, key_prefix="other/fleet")
        self.successResultOf(self.storage.store("a", b"1"))
        self.successResultOf(other.store("b", b"2"))
        self.assertEqual(self.successResultOf(self.storage.list("", True)), ["a"])
        self.assertEqual(self.successResultOf(other.list("", True)), ["b"])
        self.assertIn(b"other/fleet/b", self.redis.keys("*"))

    def test_glob_characters_are_literal(self) -> None:
        """Keys with ``*``, ``?`` and ``[`` list and delete only themselves (SCAN's glob is escaped)."""
        for key in ("a*b/1", "axb/2", "a?b/3", "a[x]b/4", "axb/5"):
            self.successResultOf(self.storage.store(key, b"v"))
        self.assertEqual(self.successResultOf(self.storage.list("a*b", False)), ["a*b/1"])
        self.assertEqual(self.successResultOf(self.storage.list("a[x]b", False)), ["a[x]b/4"])
        self.successResultOf(self.storage.delete("a*b"))
        self.assertEqual(self.successResultOf(self.storage.list("", False)), ["a?b", "a[x]b", "axb"])

    def test_stat_prefix_time_is_newest_value(self) -> None:
        """A prefix's modified time is its newest value's."""
        self.successResultOf(self.storage.store("p/a", b"1"))
        self.clock.advance(60)
        self.successResultOf(self.storage.store("p/q/b", b"2"))
        self.assertEqual(self.successResultOf(self.storage.stat("p")).modified, START + 60)

    def test_lock_is_a_token_with_an_expiry(self) -> None:
        """A lock is ``<key_prefix>:locks/<safe name>.lock`` holding a token, expiring in 10 s."""
        self.successResultOf(self.storage.lock("issue_cert_*.example.com"))
        rkey = "caddy:locks/issue_cert_wildcard_.example.com.lock"
        self.assertEqual(len(self.redis.get(rkey) or b""), 32)
        self.assertTrue(9000 < self.redis.pttl(rkey) <= 10000)
        self.assertEqual(self.successResultOf(self.storage.list("", True)), [])

    def test_renewal_extends_expiry(self) -> None:
        """While held, the lock's expiry is set back to 10 s every 5 s of the clock."""
        self.successResultOf(self.storage.lock("n"))
        rkey = self.storage.lock_redis_key("n")
        self.redis.pexpire(rkey, 2000)
        self.clock.advance(4.9)
        self.assertLessEqual(self.redis.pttl(rkey), 2000)
        self.clock.advance(0.1)
        self.assertGreater(self.redis.pttl(rkey), 9000)

    def test_lost_lock_not_renewed_nor_released(self) -> None:
        """A lock that expired and was taken by another holder is neither extended nor deleted."""
        self.successResultOf(self.storage.lock("n"))
        rkey = self.storage.lock_redis_key("n")
        self.redis.set(rkey, "someone-else", px=3000)
        self.clock.advance(5)
        self.assertEqual(self.storage.held, frozenset())
        self.assertLessEqual(self.redis.pttl(rkey), 3000)
        self.failureResultOf(self.storage.unlock("n"), KeyNotFound)
        self.assertEqual(self.redis.get(rkey), b"someone-else")

    def test_waiter_backs_off(self) -> None:
        """A waiter looks again after 0.1 s, doubling to at most 1 s."""
        self.redis.set(self.storage.lock_redis_key("n"), "someone-else", px=60000)
        waiting = self.storage.lock("n")
        waits = []
        for _ in range(7):
            (call,) = self.clock.getDelayedCalls()
            waits.append(round(call.getTime() - self.clock.seconds(), 3))
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
        self.redis.delete(self.storage.lock_redis_key("n"))
        self.clock.advance(1)
        self.assertIsNone(self.successResultOf(waiting))

    def test_cancelled_waiter_releases_a_lock_taken_in_flight(self) -> None:
        """A look that takes the lock after its waiter gave up gives the lock back."""
        pending: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []

        def deferred_run(f: Any, *args: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append((f, args, d))
            return d

        storage = self.redis_storage(self.clock, run=deferred_run)
        waiting = storage.lock("n")
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        f, args, d = pending.pop()
        d.callback(f(*args))  # the SET NX ran and took the lock
        f, args, d = pending.pop()
        d.callback(f(*args))  # the release it then sends
        self.assertIsNone(self.redis.get(storage.lock_redis_key("n")))
        self.assertEqual(storage.held, frozenset())


class OutageTests(SynchronousTestCase):
    """Redis stopped: operations fail clearly; the manager serves what it has and retries."""

    if REDIS_SERVER is None:
        skip = NO_REDIS

    def setUp(self) -> None:
        self.server = RedisServer()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.storage = RedisStorage(RedisConfig(port=self.server.port, timeout=2), self.clock, run_now)

    def test_operations_fail_naming_the_server(self) -> None:
        """Every operation fails with a RedisStorageError (an OSError) naming the server."""
        self.server.stop()
        address = f"127.0.0.1:{self.server.port}"
        for d in (self.storage.store("a", b"1"), self.storage.load("a"), self.storage.exists("a"),
                  self.storage.list("", True), self.storage.stat("a"), self.storage.delete("a"),
                  self.storage.lock("n")):
            failure = self.failureResultOf(d, RedisStorageError)
            self.assertIsInstance(failure.value, OSError)
            self.assertIn(f"redis storage at {address}: ", str(failure.value))
            self.assertIn("Connection refused", str(failure.value))

    def test_manager_keeps_serving_and_retries_renewal(self) -> None:
        """With Redis down the renewal fails and is retried on certmagic's schedule while the
        old certificate stays served; once Redis is back the retry renews it."""
        issuer = FakeIssuer(self.clock, lifetime=3 * DAY)
        cache = CertificateCache()
        manager = CertificateManager(cache, self.storage, [AutomationPolicy(issuers=[issuer])], ["example.com"],
                                     self.clock, renew_interval=3600, rng=random.Random(1))
        manager.startService()
        self.addCleanup(lambda: manager.running and manager.stopService())
        first = cache.matching("example.com")
        assert first is not None
        self.assertEqual(len(issuer.calls), 1)
        self.server.stop()
        for _ in range(2 * 24 + 1):  # the window opens after two days
            self.clock.advance(3600)
        served = cache.matching("example.com")
        self.assertEqual(served.hash if served else None, first.hash)
        self.assertEqual(len(issuer.calls), 1)  # the lock failed before any order
        self.server.start()
        self.clock.advance(RETRY_INTERVALS[-1])  # the next retry, whichever of the schedule it is
        served = cache.matching("example.com")
        self.assertNotEqual(served.hash if served else None, first.hash)
        self.assertEqual(len(issuer.calls), 2)
        self.assertEqual(self.storage.held, frozenset())
        self.assertIn(b"caddy/certificates/fake/example.com/example.com.crt", self.server.client().keys("*"))


class RealReactorTests(_Server, TestCase):
    """The thread pool and lock expiry on the real reactor (short lock lifetimes, bounded)."""

    timeout = 15

    if REDIS_SERVER is None:
        skip = NO_REDIS

    def setUp(self) -> None:
        self.server.client().flushall()

    async def test_calls_run_off_the_reactor_thread(self) -> None:
        """Redis calls run in the storage's own pool, never on the reactor thread."""
        ident = await thread_runner(REACTOR)(threading.get_ident)
        self.assertNotEqual(ident, threading.get_ident())

    async def test_from_config(self) -> None:
        """``{"module": "redis", …}`` builds a working storage through the module registry."""
        storage = storage_from_config({"module": "redis", "port": self.server.port, "key_prefix": "cfg"}, REACTOR)
        self.assertIsInstance(storage, RedisStorage)
        await storage.store("a/b", b"value")
        self.assertEqual(await storage.load("a/b"), b"value")
        self.assertEqual(self.server.client().hget("cfg/a/b", "value"), b"value")

    async def test_dead_holders_lock_expires(self) -> None:
        """A lock left by a holder that died (no renewer) is taken once it expires."""
        storage = self.redis_storage(REACTOR, run=thread_runner(REACTOR))
        rkey = storage.lock_redis_key("n")
        self.server.client().set(rkey, "dead-holder", px=300)
        await storage.lock("n")
        self.assertNotEqual(self.server.client().get(rkey), b"dead-holder")
        await storage.unlock("n")

    async def test_renewed_lock_outlives_its_ttl(self) -> None:
        """A holder's renewal moves a 0.3 s lock's expiry on in Redis; the waiter gets it only on unlock."""
        threads = thread_runner(REACTOR)
        answered: list[Deferred[None]] = []

        def run(f: Any, *args: Any) -> Deferred[Any]:
            """The storages' calls, each answer also waking whoever waits in ``next_answer``."""
            def woken(result: Any) -> Any:
                waiters, answered[:] = answered[:], []
                for waiter in waiters:
                    waiter.callback(None)
                return result

            return threads(f, *args).addBoth(woken)

        def next_answer() -> Deferred[None]:
            waiter: Deferred[None] = Deferred()
            answered.append(waiter)
            return waiter

        first = self.redis_storage(REACTOR, run=run, lock_ttl=0.3, renew_interval=0.1)
        second = self.redis_storage(REACTOR, run=run, lock_ttl=0.3, renew_interval=0.1)
        client = self.server.client()
        rkey = first.lock_redis_key("n")
        await first.lock("n")
        token = client.get(rkey)

        def expiry() -> float:
            """When Redis will drop the lock key, on this process' monotonic clock."""
            return time.monotonic() + client.pttl(rkey) / 1000

        first_expiry = expiry()
        waiting = second.lock("n")
        # The storages' own timers (first's renewals every 0.1 s, second's polls) drive this;
        # after each answer, Redis' PTTL says whether the expiry was pushed past the first one.
        while expiry() < first_expiry + 0.05 and client.get(rkey) == token and not waiting.called:
            await next_answer()
        self.assertEqual(client.get(rkey), token)  # still the holder's, renewed before it expired
        self.assertGreater(expiry(), first_expiry + 0.05)
        self.assertFalse(waiting.called)
        await first.unlock("n")
        await waiting
        self.assertEqual(second.held, frozenset({"n"}))
        await second.unlock("n")


class ConfigTests(SynchronousTestCase):
    """The plugin's JSON and Caddyfile."""

    def test_defaults(self) -> None:
        """An empty config is 127.0.0.1:6379, db 0, prefix ``caddy``, 5 s, no TLS."""
        self.assertEqual(redis_config({}), RedisConfig())
        self.assertEqual(RedisConfig().address, "127.0.0.1:6379")

    def test_plugin_json(self) -> None:
        """The plugin's JSON (lists of one host and port, timeout as a string) is read."""
        config = redis_config({"host": ["redis.internal"], "port": ["6380"], "db": 2, "username": "u",
                               "password": "p", "timeout": "3", "key_prefix": "fleet/a", "tls_enabled": True,
                               "client_type": "simple", "compression": False, "encryption_key": ""})
        self.assertEqual((config.host, config.port, config.db, config.username, config.password),
                         ("redis.internal", 6380, 2, "u", "p"))
        self.assertEqual((config.timeout, config.key_prefix, config.tls_enabled), (3.0, "fleet/a", True))

    def test_address_wins(self) -> None:
        """``address`` overrides ``host`` and ``port``; a duration timeout is read as one."""
        config = redis_config({"address": "[::1]:7000", "host": "ignored", "timeout": "500ms"})
        self.assertEqual((config.host, config.port, config.timeout, config.address), ("::1", 7000, 0.5, "[::1]:7000"))

    def test_unsupported_refused(self) -> None:
        """Cluster, sentinel, encryption, compression and bad prefixes are refused at load."""
        for bad in ({"host": ["a", "b"]}, {"client_type": "cluster"}, {"master_name": "m"},
                    {"encryption_key": "k" * 32}, {"compression": "zlib"}, {"key_prefix": "/caddy"},
                    {"key_prefix": "a/../b"}, {"port": "0"}, {"address": "nohost"}):
            self.assertRaises(ConfigError, redis_config, bad)

    def test_schema(self) -> None:
        """The module's JSON is checked by type and strictly, naming the field."""
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "redis", "db": [1]}, Clock())
        self.assertIn("caddy.storage.redis", str(error))
        self.assertIn("storage.db", str(error))
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "redis", "hots": "x"}, Clock())
        self.assertIn('unknown field "hots"', str(error))

    def test_tls_client(self) -> None:
        """``tls_enabled`` connects with TLS, verifying the server unless ``tls_insecure``."""
        import redis

        client = RedisConfig(tls_enabled=True, tls_server_certs_pem="PEM").client()
        kwargs = client.connection_pool.connection_kwargs
        self.assertIs(client.connection_pool.connection_class, redis.SSLConnection)
        self.assertEqual((kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"], kwargs["ssl_ca_data"]),
                         ("required", True, "PEM"))
        kwargs = RedisConfig(tls_enabled=True, tls_insecure=True).client().connection_pool.connection_kwargs
        self.assertEqual((kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]), ("none", False))
        self.assertIsNot(RedisConfig().client().connection_pool.connection_class, redis.SSLConnection)

    def test_caddyfile(self) -> None:
        """``storage redis { … }`` adapts to the plugin's JSON."""
        config, _ = adapt("{\n\tstorage redis {\n\t\thost 10.0.0.5\n\t\tport 6380\n\t\tdb 2\n\t\tusername u\n"
                          "\t\tpassword p\n\t\tkey_prefix fleet\n\t\ttimeout 3\n\t\ttls_enabled true\n"
                          "\t\ttls_insecure false\n\t}\n}\nexample.com {\n\trespond hi\n}\n")
        self.assertEqual(config["storage"], {
            "module": "redis", "host": ["10.0.0.5"], "port": ["6380"], "db": 2, "username": "u", "password": "p",
            "key_prefix": "fleet", "timeout": "3", "tls_enabled": True, "tls_insecure": False})
        self.assertEqual(redis_config({k: v for k, v in config["storage"].items() if k != "module"}).port, 6380)

    def test_caddyfile_errors(self) -> None:
        """Cluster mode, unknown parameters and a non-numeric db are Caddyfile errors."""
        for body in ("storage redis cluster {\n\t\thost a\n\t}", "storage redis {\n\t\thots a\n\t}",
                     "storage redis {\n\t\tdb x\n\t}", "storage redis {\n\t\ttls_enabled yes\n\t}"):
            self.assertRaises(CaddyfileError, adapt, "{\n\t" + body + "\n}\nexample.com {\n\trespond hi\n}\n")
